"""Sign-in through upstream OpenID Providers (OpenID Connect Core 1.0 §3.1, RFC 9207, RFC 7636).

authgate is here a relying party of the organisation's identity provider: ``providers``
(configuration, the client secret sealed at rest), ``discovery`` (the provider's metadata and
JWKS, cached), ``transactions`` (the authorization request: code flow, PKCE S256, ``state``,
``nonce``), ``callback`` (the authorization response, the code exchange, UserInfo),
``id_token`` (the ID token's checks), ``linking`` (which local user signs in) and ``errors``.
No HTTP library here: the back channel is the ``UpstreamHttp`` port.
"""
