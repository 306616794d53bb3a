#!/usr/bin/env bash
# End-to-end OAuth 2.1 check of a running authgate, the way an MCP client uses it: discovery,
# PKCE authorization code flow through sign-in and consent, resource indicators with JWT access
# tokens and the JWKS, introspection, revocation, refresh token rotation, the management API
# with an OAuth token, and withdrawal. It creates a test app and deletes it again, also when a
# step fails. It registers the resource https://api.example.com (POST /api/v2/resources) and
# deletes it at the end; a resource already registered under that URI is used and left alone.
#
#   AUTHGATE_USERNAME=admin AUTHGATE_PASSWORD=… AUTHGATE_TOKEN=agpat_… \
#       scripts/oauth2/test-mcp-oauth2.sh
#
# Env: AUTHGATE_URL (default http://localhost:3000), AUTHGATE_ISSUER (default AUTHGATE_URL),
# AUTHGATE_TOKEN (an admin's API token; SESSION_TOKEN accepted), AUTHGATE_USERNAME (default
# admin) and AUTHGATE_PASSWORD (the user who signs in and consents),
# AUTHGATE_REFRESH_REUSE_GRACE_SECONDS (the server's setting, default 120: the reuse check
# waits it out). Prints one `✓` line per step and a summary; exits 1 at the first failure.
set -Eeuo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

EXPECTED_ISSUER="${AUTHGATE_ISSUER:-$AUTHGATE_URL}"
USERNAME="${AUTHGATE_USERNAME:-admin}"
PASSWORD="${AUTHGATE_PASSWORD:-}"
GRACE="${AUTHGATE_REFRESH_REUSE_GRACE_SECONDS:-120}"
RESOURCE="https://api.example.com"
OTHER_RESOURCE="https://other.example.com"

PASSED=0
STEP="starting"
CLIENT_ID=""
CLEANED=0
RESOURCE_ID=""
RESOURCE_CREATED=0 # 1 while this script owes the deletion of the resource it registered

# ---------------------------------------------------------------------------------------------
# Reporting: lib.sh's die() is replaced so every failure names the step, cleans up and
# prints the summary.

die() {
    printf '✗ %s\n  %s\n' "$STEP" "$1" >&2
    if [ -n "${2:-}" ]; then
        printf '  server answered:\n' >&2
        printf '%s\n' "$2" | json_pretty | sed 's/^/    /' >&2
    fi
    cleanup
    printf '%d passed, 1 failed\n' "$PASSED"
    exit 1
}

step() { STEP="$1"; }

pass() {
    PASSED=$((PASSED + 1))
    printf '✓ %s\n' "$1"
}

cleanup() {
    trap - EXIT INT TERM ERR
    # A wait in progress: stop it, or it would hold our output open after we exit.
    if [ -n "${WAIT_PID:-}" ]; then kill "$WAIT_PID" 2>/dev/null || true; fi
    if [ -n "$CLIENT_ID" ] && [ "$CLEANED" = 0 ]; then
        CLEANED=1
        "$HERE/cleanup-test-app.sh" "$CLIENT_ID" >/dev/null 2>&1 ||
            printf '  (cleanup: could not delete app %s)\n' "$CLIENT_ID" >&2
    fi
    if [ "$RESOURCE_CREATED" = 1 ] && [ -n "$RESOURCE_ID" ]; then
        RESOURCE_CREATED=0
        # Plain curl: http() would call die() again when the server is gone.
        local status
        status="$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE \
            -H "Authorization: Bearer $AUTHGATE_TOKEN" \
            "$AUTHGATE_URL/api/v2/resources/$(urlencode "$RESOURCE_ID")" 2>/dev/null)" || status=000
        [ "$status" = 204 ] ||
            printf '  (cleanup: could not delete resource %s: HTTP %s)\n' "$RESOURCE" "$status" >&2
    fi
    remove_http_tmp
}

on_error() {
    die "unexpected failure of a command at line $1 of $0"
}

trap 'on_error $LINENO' ERR
trap cleanup EXIT
trap 'die "interrupted"' INT TERM

# ---------------------------------------------------------------------------------------------
# Checks.

expect_status() {
    [ "$HTTP_STATUS" = "$1" ] || die "$2 answered HTTP $HTTP_STATUS, expected $1" "$HTTP_BODY"
}

# expect_oauth_error STATUS ERROR WHAT: an RFC 6749 §5.2 error response.
expect_oauth_error() {
    local error
    error="$(printf '%s' "$HTTP_BODY" | json_get error)"
    if [ "$HTTP_STATUS" != "$1" ] || [ "$error" != "$2" ]; then
        die "$3: expected HTTP $1 with error \"$2\", got HTTP $HTTP_STATUS" "$HTTP_BODY"
    fi
    [ -n "$(printf '%s' "$HTTP_BODY" | json_get error_description)" ] ||
        die "$3: the error response has no error_description" "$HTTP_BODY"
    [ -z "$(printf '%s' "$HTTP_BODY" | json_get access_token)" ] ||
        die "$3: an error response carried an access_token" "$HTTP_BODY"
}

# expect_tokens WHAT [FORMAT]: a successful token response (RFC 6749 §5.1) whose access token
# is opaque (agat_…, the default) or, with FORMAT jwt, a JWT (RFC 9068); sets ACCESS_TOKEN and
# REFRESH_TOKEN.
expect_tokens() {
    expect_status 200 "$1"
    ACCESS_TOKEN="$(printf '%s' "$HTTP_BODY" | json_get access_token)"
    REFRESH_TOKEN="$(printf '%s' "$HTTP_BODY" | json_get refresh_token)"
    local token_type expires_in
    token_type="$(printf '%s' "$HTTP_BODY" | json_get token_type)"
    expires_in="$(printf '%s' "$HTTP_BODY" | json_get expires_in)"
    if [ "${2:-opaque}" = jwt ]; then
        is_jwt "$ACCESS_TOKEN" ||
            die "$1: the access_token is not a JWT (three dot-separated parts)" "$HTTP_BODY"
    else
        case "$ACCESS_TOKEN" in agat_*) ;; *) die "$1: no agat_… access_token" "$HTTP_BODY" ;; esac
    fi
    case "$REFRESH_TOKEN" in agrt_*) ;; *) die "$1: no agrt_… refresh_token" "$HTTP_BODY" ;; esac
    [ "$token_type" = Bearer ] || die "$1: token_type is '$token_type', expected Bearer" "$HTTP_BODY"
    if ! [[ "$expires_in" =~ ^[1-9][0-9]*$ ]]; then
        die "$1: expires_in is '$expires_in', expected a positive integer" "$HTTP_BODY"
    fi
    [ "$(header cache-control)" = no-store ] ||
        die "$1: Cache-Control is '$(header cache-control)', expected no-store"
}

# ---------------------------------------------------------------------------------------------
# Flow steps.

authorize_url() { # STATE CHALLENGE [RESOURCE]
    local url
    url="$AUTHORIZATION_ENDPOINT?response_type=code&client_id=$(urlencode "$CLIENT_ID")"
    url+="&redirect_uri=$(urlencode "$REDIRECT_URI")&state=$(urlencode "$1")"
    url+="&code_challenge=$2&code_challenge_method=S256"
    if [ -n "${3:-}" ]; then
        url+="&resource=$(urlencode "$3")"
    fi
    printf '%s' "$url"
}

# get_code [RESOURCE]: a new PKCE pair (VERIFIER) and an authorization code (CODE), consented
# in the browser session; checks the callback's state and iss (RFC 9207).
get_code() {
    local state challenge got
    state="$(random_state)"
    VERIFIER="$(pkce_verifier)"
    challenge="$(pkce_challenge "$VERIFIER")"
    consent "$(authorize_url "$state" "$challenge" "${1:-}")" allow
    case "$CALLBACK_URL" in
    "$REDIRECT_URI?"*) ;;
    *) die "the consent redirect goes to '$CALLBACK_URL', not to $REDIRECT_URI" ;;
    esac
    if has_query_param "$CALLBACK_URL" error; then
        die "the authorization was refused: $(query_param "$CALLBACK_URL" error):" \
            "$(query_param "$CALLBACK_URL" error_description)"
    fi
    CODE="$(query_param "$CALLBACK_URL" code)"
    case "$CODE" in agac_*) ;; *) die "the callback has no agac_… code: $CALLBACK_URL" ;; esac
    got="$(query_param "$CALLBACK_URL" state)"
    [ "$got" = "$state" ] || die "the callback's state is '$got', expected '$state'"
    got="$(query_param "$CALLBACK_URL" iss)"
    [ "$got" = "$ISSUER" ] || die "the callback's iss is '$got', expected the issuer '$ISSUER'"
}

# exchange CODE VERIFIER [curl args…]: the authorization_code grant with client_secret_post.
exchange() {
    local code="$1" verifier="$2"
    shift 2
    http POST "$TOKEN_ENDPOINT" --data-urlencode grant_type=authorization_code \
        --data-urlencode "code=$code" --data-urlencode "code_verifier=$verifier" \
        --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "client_id=$CLIENT_ID" \
        --data-urlencode "client_secret=$CLIENT_SECRET" "$@"
}

# refresh REFRESH_TOKEN: the refresh_token grant with client_secret_basic.
refresh() {
    http POST "$TOKEN_ENDPOINT" -u "$CLIENT_ID:$CLIENT_SECRET" \
        --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$1"
}

# introspect TOKEN: RFC 7662 with the test app's credentials (client_secret_basic).
introspect() {
    http POST "$INTROSPECTION_ENDPOINT" -u "$CLIENT_ID:$CLIENT_SECRET" --data-urlencode "token=$1"
}

expect_active() { # true|false WHAT
    expect_status 200 "the introspection of $2"
    local active
    active="$(printf '%s' "$HTTP_BODY" | json_get active)"
    [ "$active" = "$1" ] || die "the introspection of $2 says active: '$active', expected $1" \
        "$HTTP_BODY"
    [ "$(header cache-control)" = no-store ] ||
        die "the introspection response's Cache-Control is '$(header cache-control)', not no-store"
}

users_me() { # [TOKEN]
    if [ -n "${1:-}" ]; then
        http GET "$AUTHGATE_URL/api/v2/users/me" -H "Authorization: Bearer $1"
    else
        http GET "$AUTHGATE_URL/api/v2/users/me"
    fi
}

expect_token_works() { # TOKEN WHAT
    users_me "$1"
    expect_status 200 "GET /api/v2/users/me with $2"
    local who
    who="$(printf '%s' "$HTTP_BODY" | json_get username)"
    [ "$who" = "$(printf '%s' "$USERNAME" | tr '[:upper:]' '[:lower:]')" ] ||
        die "GET /api/v2/users/me with $2 answered user '$who', expected '$USERNAME'" "$HTTP_BODY"
}

expect_token_refused() { # TOKEN WHAT
    users_me "$1"
    expect_status 401 "GET /api/v2/users/me with $2"
}

# ---------------------------------------------------------------------------------------------

need curl
need_token
[ -n "$PASSWORD" ] || die "AUTHGATE_PASSWORD is not set: the password of $USERNAME (the admin \
password \`authgate serve --dev\` printed on first start)"
[[ "$GRACE" =~ ^[0-9]+$ ]] || die "AUTHGATE_REFRESH_REUSE_GRACE_SECONDS must be a number of seconds"
printf 'Testing authgate at %s\n' "$AUTHGATE_URL"

step "authorization server metadata (RFC 8414)"
http GET "$AUTHGATE_URL/.well-known/oauth-authorization-server"
expect_status 200 "GET /.well-known/oauth-authorization-server"
METADATA="$HTTP_BODY"
ISSUER="$(printf '%s' "$METADATA" | json_get issuer)"
[ "$ISSUER" = "$EXPECTED_ISSUER" ] || die "issuer is '$ISSUER', expected '$EXPECTED_ISSUER' \
(set AUTHGATE_ISSUER when the server's issuer differs from AUTHGATE_URL)" "$METADATA"
AUTHORIZATION_ENDPOINT="$(printf '%s' "$METADATA" | json_get authorization_endpoint)"
TOKEN_ENDPOINT="$(printf '%s' "$METADATA" | json_get token_endpoint)"
[ "$AUTHORIZATION_ENDPOINT" = "${ISSUER%/}/oauth2/authorize" ] ||
    die "authorization_endpoint is '$AUTHORIZATION_ENDPOINT'" "$METADATA"
[ "$TOKEN_ENDPOINT" = "${ISSUER%/}/oauth2/tokens" ] ||
    die "token_endpoint is '$TOKEN_ENDPOINT'" "$METADATA"
JWKS_URI="$(printf '%s' "$METADATA" | json_get jwks_uri)"
INTROSPECTION_ENDPOINT="$(printf '%s' "$METADATA" | json_get introspection_endpoint)"
REVOCATION_ENDPOINT="$(printf '%s' "$METADATA" | json_get revocation_endpoint)"
[ "$JWKS_URI" = "${ISSUER%/}/.well-known/jwks.json" ] || die "jwks_uri is '$JWKS_URI'" "$METADATA"
[ "$INTROSPECTION_ENDPOINT" = "${ISSUER%/}/oauth2/introspect" ] ||
    die "introspection_endpoint is '$INTROSPECTION_ENDPOINT'" "$METADATA"
[ "$REVOCATION_ENDPOINT" = "${ISSUER%/}/oauth2/revoke" ] ||
    die "revocation_endpoint is '$REVOCATION_ENDPOINT'" "$METADATA"
printf '%s' "$METADATA" | json_array_has code_challenge_methods_supported S256 ||
    die "code_challenge_methods_supported does not list S256" "$METADATA"
printf '%s' "$METADATA" | json_array_has grant_types_supported refresh_token ||
    die "grant_types_supported does not list refresh_token" "$METADATA"
[ "$(printf '%s' "$METADATA" | json_get authorization_response_iss_parameter_supported)" = true ] ||
    die "authorization_response_iss_parameter_supported is not true" "$METADATA"
pass "$STEP: issuer $ISSUER, endpoints, S256, iss parameter"

step "protected resource metadata (RFC 9728)"
http GET "$AUTHGATE_URL/.well-known/oauth-protected-resource"
expect_status 200 "GET /.well-known/oauth-protected-resource"
printf '%s' "$HTTP_BODY" | json_array_has authorization_servers "$ISSUER" ||
    die "authorization_servers does not list $ISSUER" "$HTTP_BODY"
printf '%s' "$HTTP_BODY" | json_array_has bearer_methods_supported header ||
    die "bearer_methods_supported does not list header" "$HTTP_BODY"
pass "$STEP: resource $(printf '%s' "$HTTP_BODY" | json_get resource)"

step "management API without a token (RFC 6750 §3)"
users_me
expect_status 401 "GET /api/v2/users/me without a token"
case "$(header www-authenticate)" in
Bearer*) ;;
*) die "the 401 has no 'WWW-Authenticate: Bearer' header" "$HTTP_BODY" ;;
esac
pass "$STEP: 401 with WWW-Authenticate: Bearer"

step "create a test app and a client secret"
SETUP_ERR="$(mktemp)"
if ! EXPORTS="$("$HERE/setup-test-app.sh" 2>"$SETUP_ERR")"; then
    MESSAGE="$(cat "$SETUP_ERR")"
    rm -f "$SETUP_ERR"
    die "setup-test-app.sh failed:
$(printf '%s\n' "$MESSAGE" | sed 's/^/  /')"
fi
rm -f "$SETUP_ERR"
eval "$EXPORTS"
pass "$STEP: client_id $CLIENT_ID"

step "sign in as $USERNAME"
sign_in "$USERNAME" "$PASSWORD"
pass "$STEP"

step "authorization code flow with PKCE: consent"
get_code
CODE1="$CODE" VERIFIER1="$VERIFIER"
pass "$STEP: code, state and iss on the callback"

step "exchange the code (client_secret_post)"
exchange "$CODE1" "$VERIFIER1"
expect_tokens "the token request"
ACCESS1="$ACCESS_TOKEN" REFRESH1="$REFRESH_TOKEN"
pass "$STEP: access and refresh token, Cache-Control: no-store"

step "the access token on the management API"
expect_token_works "$ACCESS1" "the access token"
pass "$STEP: GET /api/v2/users/me is $USERNAME"

step "a wrong code_verifier is refused (RFC 7636 §4.6)"
get_code
exchange "$CODE" "$(pkce_verifier)"
expect_oauth_error 400 invalid_grant "the exchange with a wrong code_verifier"
pass "$STEP: invalid_grant"

step "a failed exchange leaves the code usable"
exchange "$CODE" "$VERIFIER"
expect_tokens "the exchange with the right code_verifier"
ACCESS_B="$ACCESS_TOKEN"
pass "$STEP"

step "a replayed code is refused and its tokens revoked (RFC 6749 §4.1.2)"
exchange "$CODE" "$VERIFIER"
expect_oauth_error 400 invalid_grant "the second exchange of one code"
expect_token_refused "$ACCESS_B" "a token minted from the replayed code"
pass "$STEP"

step "register the resource $RESOURCE (POST /api/v2/resources)"
api POST /api/v2/resources -H 'Content-Type: application/json' \
    --data "$(resource_json "$RESOURCE" "Example API (test-mcp-oauth2.sh)")"
case "$HTTP_STATUS" in
201)
    RESOURCE_ID="$(printf '%s' "$HTTP_BODY" | json_get id)"
    [ -n "$RESOURCE_ID" ] || die "the registered resource has no id" "$HTTP_BODY"
    RESOURCE_CREATED=1
    HOW="registered (deleted again at the end)"
    ;;
409)
    api GET "/api/v2/resources/$(urlencode "$RESOURCE")"
    expect_status 200 "GET /api/v2/resources/$(urlencode "$RESOURCE") after a 409 Conflict"
    RESOURCE_ID="$(printf '%s' "$HTTP_BODY" | json_get id)"
    HOW="already registered: used as it is and left in place"
    ;;
*) die "POST /api/v2/resources answered HTTP $HTTP_STATUS, expected 201 or 409" "$HTTP_BODY" ;;
esac
RESOURCE_FORMAT="$(printf '%s' "$HTTP_BODY" | json_get token_format)"
case "$RESOURCE_FORMAT" in jwt | opaque) ;; *) die "token_format is '$RESOURCE_FORMAT'" "$HTTP_BODY" ;; esac
pass "$STEP: $HOW, id $RESOURCE_ID, $RESOURCE_FORMAT access tokens"

step "resource indicator (RFC 8707)"
get_code "$RESOURCE"
exchange "$CODE" "$VERIFIER" --data-urlencode "resource=$RESOURCE"
expect_tokens "the exchange with resource=$RESOURCE" "$RESOURCE_FORMAT"
ACCESS_R="$ACCESS_TOKEN" REFRESH_R="$REFRESH_TOKEN"
expect_token_refused "$ACCESS_R" "a token for $RESOURCE"
if [ "$RESOURCE_FORMAT" = jwt ]; then
    pass "$STEP: a JWT access token for $RESOURCE, refused by authgate's own API"
else
    pass "$STEP: an opaque access token for $RESOURCE, refused by authgate's own API"
fi

if [ "$RESOURCE_FORMAT" = jwt ]; then
    step "the JWT's signing key is published (JWKS, RFC 7517)"
    KID="$(jwt_header "$ACCESS_R" | json_get kid)"
    [ -n "$KID" ] || die "the JWT's header has no kid: $(jwt_header "$ACCESS_R")"
    http GET "$JWKS_URI"
    expect_status 200 "GET $JWKS_URI"
    printf '%s' "$HTTP_BODY" | json_array_has_object keys kid "$KID" ||
        die "$JWKS_URI has no key with the JWT's kid $KID" "$HTTP_BODY"
    pass "$STEP: kid $KID is in $JWKS_URI"
else
    printf -- '- JWKS check skipped: %s issues opaque access tokens\n' "$RESOURCE"
fi

step "token introspection (RFC 7662)"
introspect "$ACCESS_R"
expect_active true "the access token for $RESOURCE"
AUD="$(printf '%s' "$HTTP_BODY" | json_get aud)"
[ "$AUD" = "$RESOURCE" ] || printf '%s' "$HTTP_BODY" | json_array_has aud "$RESOURCE" ||
    die "the introspection's aud is '$AUD', expected $RESOURCE" "$HTTP_BODY"
GOT="$(printf '%s' "$HTTP_BODY" | json_get client_id)"
[ "$GOT" = "$CLIENT_ID" ] || die "the introspection's client_id is '$GOT'" "$HTTP_BODY"
pass "$STEP: active, aud $RESOURCE, client_id $CLIENT_ID"

step "revoke the refresh token (RFC 7009)"
http POST "$REVOCATION_ENDPOINT" -u "$CLIENT_ID:$CLIENT_SECRET" \
    --data-urlencode "token=$REFRESH_R" --data-urlencode token_type_hint=refresh_token
expect_status 200 "POST $REVOCATION_ENDPOINT"
introspect "$ACCESS_R"
expect_active false "the access token of the revoked refresh token"
introspect "$REFRESH_R"
expect_active false "the revoked refresh token"
refresh "$REFRESH_R"
expect_oauth_error 400 invalid_grant "the refresh with a revoked refresh token"
pass "$STEP: 200, then its access token and itself introspect as inactive"

step "a different resource at the token endpoint is refused"
get_code "$RESOURCE"
exchange "$CODE" "$VERIFIER" --data-urlencode "resource=$OTHER_RESOURCE"
expect_oauth_error 400 invalid_target "the exchange with resource=$OTHER_RESOURCE"
exchange "$CODE" "$VERIFIER"
expect_tokens "the exchange of the same code without resource" "$RESOURCE_FORMAT"
pass "$STEP: invalid_target; omitting resource is allowed"

step "refresh (client_secret_basic)"
refresh "$REFRESH1"
expect_tokens "the refresh request"
ACCESS2="$ACCESS_TOKEN" REFRESH2="$REFRESH_TOKEN"
[ "$ACCESS2" != "$ACCESS1" ] || die "the refresh returned the same access token"
[ "$REFRESH2" != "$REFRESH1" ] || die "the refresh token was not rotated"
expect_token_works "$ACCESS2" "the refreshed access token"
pass "$STEP: new access token, rotated refresh token"

step "reusing a rotated refresh token revokes the family (OAuth 2.1 §4.3.1)"
if [ "$GRACE" -gt 0 ]; then
    printf '  waiting %ss for the refresh reuse grace period\n' "$((GRACE + 1))"
    # In the background, so that Ctrl-C (or SIGTERM) interrupts the wait at once: bash runs a
    # trap only after a foreground command ends, but `wait` returns as soon as a signal comes.
    sleep "$((GRACE + 1))" &
    WAIT_PID=$!
    wait "$WAIT_PID"
    WAIT_PID=""
fi
refresh "$REFRESH1"
expect_oauth_error 400 invalid_grant "the reuse of the old refresh token"
refresh "$REFRESH2"
expect_oauth_error 400 invalid_grant "the newest refresh token after the reuse"
expect_token_refused "$ACCESS2" "an access token of the revoked family"
pass "$STEP"

step "withdraw the app's tokens (DELETE /oauth2/tokens)"
get_code
exchange "$CODE" "$VERIFIER"
expect_tokens "the token request"
expect_token_works "$ACCESS_TOKEN" "a fresh access token"
# As the signed-in user (the session cookie), who must also send the session's CSRF token.
http DELETE "$AUTHGATE_URL/oauth2/tokens?client_id=$(urlencode "$CLIENT_ID")" \
    -H "X-CSRF-Token: $SESSION_CSRF"
expect_status 204 "DELETE /oauth2/tokens?client_id=$CLIENT_ID"
expect_token_refused "$ACCESS_TOKEN" "a withdrawn access token"
refresh "$REFRESH_TOKEN"
expect_oauth_error 400 invalid_grant "the refresh with a withdrawn refresh token"
pass "$STEP: access and refresh token revoked"

step "delete the test app"
CLEANUP_OUT="$("$HERE/cleanup-test-app.sh" "$CLIENT_ID" 2>&1)" || die "$CLEANUP_OUT"
CLEANED=1
api GET "/api/v2/oauth2-provider/apps/$CLIENT_ID"
expect_status 404 "GET /api/v2/oauth2-provider/apps/$CLIENT_ID after the deletion"
pass "$STEP"

if [ "$RESOURCE_CREATED" = 1 ]; then
    step "delete the resource $RESOURCE"
    api DELETE "/api/v2/resources/$(urlencode "$RESOURCE_ID")"
    expect_status 204 "DELETE /api/v2/resources/$RESOURCE_ID"
    RESOURCE_CREATED=0
    api GET "/api/v2/resources/$(urlencode "$RESOURCE")"
    expect_status 404 "GET /api/v2/resources/$(urlencode "$RESOURCE") after the deletion"
    pass "$STEP"
fi

cleanup
printf '%d passed, 0 failed\n' "$PASSED"
