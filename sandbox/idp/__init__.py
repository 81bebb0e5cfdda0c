"""The provincial identity provider simulation (OIDC + PKCE, resident look-up)."""
