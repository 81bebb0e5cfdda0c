"""Identity routes: logins per channel, refresh, logout, the JWKS, /me, staff kiosk registry."""
