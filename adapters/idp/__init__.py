"""The provincial identity provider: OIDC authorisation code + PKCE, userinfo, resident look-up."""
