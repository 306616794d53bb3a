#!/usr/bin/env bash
# Generate a PKCE pair (RFC 7636): a code verifier (base64url of 32 random bytes) and its S256
# code challenge, BASE64URL(SHA256(verifier)).
#
#   scripts/oauth2/generate-pkce.sh               print `export` lines (stdout) and usage (stderr)
#   eval "$(scripts/oauth2/generate-pkce.sh)"     set CODE_VERIFIER and CODE_CHALLENGE
#   source scripts/oauth2/generate-pkce.sh        the same, from an interactive bash
#
# Needs openssl, or python3 when openssl is missing.

_pkce_sourced=0
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    _pkce_sourced=1
else
    set -euo pipefail
fi

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

_pkce_generate() {
    local verifier challenge
    verifier="$(pkce_verifier)" || return 1
    challenge="$(pkce_challenge "$verifier")" || return 1
    if [ ${#verifier} -ne 43 ] || [ ${#challenge} -ne 43 ]; then
        echo "generate-pkce.sh: could not compute a PKCE pair (is openssl or python3 installed?)" >&2
        return 1
    fi
    CODE_VERIFIER="$verifier"
    CODE_CHALLENGE="$challenge"
    export CODE_VERIFIER CODE_CHALLENGE
}

if [ "$_pkce_sourced" = 1 ]; then
    unset _pkce_sourced
    if _pkce_generate; then
        echo "Exported CODE_VERIFIER=$CODE_VERIFIER and CODE_CHALLENGE=$CODE_CHALLENGE" >&2
    else
        return 1
    fi
    return 0
fi

_pkce_generate || exit 1
printf 'export CODE_VERIFIER=%s\n' "$CODE_VERIFIER"
printf 'export CODE_CHALLENGE=%s\n' "$CODE_CHALLENGE"
cat >&2 <<EOF

Code verifier:  $CODE_VERIFIER
Code challenge: $CODE_CHALLENGE  (method S256)

Use them:
  eval "\$(scripts/oauth2/generate-pkce.sh)"      # or: source scripts/oauth2/generate-pkce.sh

  # 1. In the authorization request (the browser):
  $AUTHGATE_URL/oauth2/authorize?response_type=code&client_id=\$CLIENT_ID\\
&redirect_uri=$(urlencode "$REDIRECT_URI")&state=\$STATE\\
&code_challenge=\$CODE_CHALLENGE&code_challenge_method=S256

  # 2. In the token request:
  curl -s $AUTHGATE_URL/oauth2/tokens -d grant_type=authorization_code \\
    -d code="\$CODE" -d code_verifier="\$CODE_VERIFIER" -d redirect_uri=$REDIRECT_URI \\
    -d client_id="\$CLIENT_ID" -d client_secret="\$CLIENT_SECRET"
EOF
