# shellcheck shell=bash
# Shared helpers for the scripts in scripts/oauth2/ (sourced, never run).
#
# Needs only curl, plus jq or python3 for JSON, plus openssl or python3 for PKCE.
#
#   AUTHGATE_URL        where authgate answers (default http://localhost:3000; BASE_URL accepted)
#   AUTHGATE_TOKEN      a personal API token (agpat_…) for the management API (SESSION_TOKEN accepted)
#   AUTHGATE_JSON_TOOL  jq or python3: force one JSON tool (default: jq when installed)
#
# This file sets no shell options: the scripts that source it do (set -euo pipefail).

AUTHGATE_URL="${AUTHGATE_URL:-${BASE_URL:-http://localhost:3000}}"
AUTHGATE_URL="${AUTHGATE_URL%/}"
AUTHGATE_TOKEN="${AUTHGATE_TOKEN:-${SESSION_TOKEN:-}}"
REDIRECT_URI="${REDIRECT_URI:-http://localhost:9876/callback}"

# ---------------------------------------------------------------------------------------------
# Messages. Human messages go to stderr, so stdout stays for what scripts print for `eval`.

info() { printf '%s\n' "$*" >&2; }

# die MESSAGE [BODY]: print the message (and the server's answer, if given) and exit 1.
die() {
    printf 'error: %s\n' "$1" >&2
    if [ -n "${2:-}" ]; then
        printf '%s\n' "server answered:" >&2
        printf '%s\n' "$2" | sed 's/^/  /' >&2
    fi
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed${2:+ ($2)}"
}

need_token() {
    [ -n "$AUTHGATE_TOKEN" ] || die "AUTHGATE_TOKEN is not set: use the API token that \
\`authgate serve --dev\` printed on first start, or create one with \
\`authgate tokens create --user admin --name scripts\`"
}

# ---------------------------------------------------------------------------------------------
# JSON: jq when installed, python3 otherwise. Paths are dotted keys: "client_secret_full",
# "endpoints.token". Missing keys and null print nothing; strings print raw; the rest as JSON.

json_tool() {
    if [ -n "${AUTHGATE_JSON_TOOL:-}" ]; then
        printf '%s' "$AUTHGATE_JSON_TOOL"
    elif command -v jq >/dev/null 2>&1; then
        printf 'jq'
    elif command -v python3 >/dev/null 2>&1; then
        printf 'python3'
    else
        die "jq or python3 is required to read JSON"
    fi
}

_py_json() {
    python3 -c "$1" "${@:2}"
}

# json_get PATH < JSON
json_get() {
    if [ "$(json_tool)" = jq ]; then
        jq -r --arg p "$1" 'getpath($p | split("."))
            | if . == null then empty elif type == "string" then . else tojson end' 2>/dev/null || true
    else
        _py_json '
import json, sys
try:
    value = json.load(sys.stdin)
    for key in sys.argv[1].split("."):
        value = value.get(key) if isinstance(value, dict) else None
except ValueError:
    value = None
if value is not None:
    print(value if isinstance(value, str) else json.dumps(value))
' "$1"
    fi
}

# json_array_has PATH VALUE < JSON: succeeds when the array at PATH contains the string VALUE.
json_array_has() {
    if [ "$(json_tool)" = jq ]; then
        jq -e --arg p "$1" --arg v "$2" \
            '(getpath($p | split(".")) // []) | type == "array" and index([$v]) != null' \
            >/dev/null 2>&1
    else
        _py_json '
import json, sys
try:
    value = json.load(sys.stdin)
    for key in sys.argv[1].split("."):
        value = value.get(key) if isinstance(value, dict) else None
except ValueError:
    value = None
sys.exit(0 if isinstance(value, list) and sys.argv[2] in value else 1)
' "$1" "$2"
    fi
}

# json_pretty < JSON: indented JSON, or the text unchanged when it is not JSON.
json_pretty() {
    local text
    text="$(cat)"
    if [ "$(json_tool)" = jq ]; then
        printf '%s' "$text" | jq . 2>/dev/null || printf '%s\n' "$text"
    else
        printf '%s' "$text" | _py_json '
import json, sys
text = sys.stdin.read()
try:
    print(json.dumps(json.loads(text), indent=2))
except ValueError:
    print(text)
'
    fi
}

# app_json NAME REDIRECT_URI: the body of POST /api/v2/oauth2-provider/apps.
app_json() {
    if [ "$(json_tool)" = jq ]; then
        jq -cn --arg name "$1" --arg uri "$2" '{name: $name, redirect_uris: [$uri]}'
    else
        _py_json '
import json, sys
print(json.dumps({"name": sys.argv[1], "redirect_uris": [sys.argv[2]]}))
' "$1" "$2"
    fi
}

# json_array_has_object PATH FIELD VALUE < JSON: succeeds when the array at PATH holds an object
# whose FIELD is the string VALUE (e.g. `keys kid "$KID"` for a JWKS).
json_array_has_object() {
    if [ "$(json_tool)" = jq ]; then
        jq -e --arg p "$1" --arg f "$2" --arg v "$3" '(getpath($p | split(".")) // [])
            | if type == "array" then any(.[]; type == "object" and .[$f] == $v) else false end' \
            >/dev/null 2>&1
    else
        _py_json '
import json, sys
try:
    value = json.load(sys.stdin)
    for key in sys.argv[1].split("."):
        value = value.get(key) if isinstance(value, dict) else None
except ValueError:
    value = None
found = isinstance(value, list) and any(
    isinstance(item, dict) and item.get(sys.argv[2]) == sys.argv[3] for item in value
)
sys.exit(0 if found else 1)
' "$1" "$2" "$3"
    fi
}

# resource_json IDENTIFIER NAME: the body of POST /api/v2/resources (no scopes, the server's
# defaults: JWT access tokens).
resource_json() {
    if [ "$(json_tool)" = jq ]; then
        jq -cn --arg id "$1" --arg name "$2" '{identifier: $id, name: $name, scopes: []}'
    else
        _py_json '
import json, sys
print(json.dumps({"identifier": sys.argv[1], "name": sys.argv[2], "scopes": []}))
' "$1" "$2"
    fi
}

# ---------------------------------------------------------------------------------------------
# JWTs (RFC 7519): only read here, never verified (a resource server verifies them with the
# JWKS).

# is_jwt VALUE: succeeds when VALUE has the compact form header.payload.signature (RFC 7515 §7.1).
is_jwt() {
    [[ "$1" =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]]
}

# base64url_decode VALUE: the bytes of unpadded base64url VALUE.
base64url_decode() {
    local value
    value="$(printf '%s' "$1" | tr '_-' '/+')"
    while [ $((${#value} % 4)) -ne 0 ]; do
        value+="="
    done
    if command -v openssl >/dev/null 2>&1; then
        printf '%s\n' "$value" | openssl base64 -d -A
    else
        python3 -c 'import base64, sys
sys.stdout.buffer.write(base64.b64decode(sys.argv[1]))' "$value"
    fi
}

# jwt_header TOKEN: the JSON of a JWT's protected header (its first part).
jwt_header() {
    base64url_decode "${1%%.*}"
}

# ---------------------------------------------------------------------------------------------
# URLs.

# urlencode VALUE: percent-encode everything but the unreserved characters (RFC 3986 §2.3).
urlencode() {
    local value="$1" out="" ch i
    local LC_ALL=C
    for ((i = 0; i < ${#value}; i++)); do
        ch="${value:i:1}"
        case "$ch" in
        [A-Za-z0-9.~_-]) out+="$ch" ;;
        *) out+="$(printf '%%%02X' "'$ch")" ;;
        esac
    done
    printf '%s' "$out"
}

# urldecode VALUE: '+' is a space, %XX a byte (application/x-www-form-urlencoded).
urldecode() {
    local value="${1//+/ }"
    printf '%b' "${value//%/\\x}"
}

# query_param URL NAME: the decoded value of NAME in URL's query (empty when absent).
query_param() {
    local query="${1#*\?}" pair
    [ "$query" != "$1" ] || return 0
    query="${query%%#*}"
    local IFS='&'
    for pair in $query; do
        if [ "${pair%%=*}" = "$2" ]; then
            urldecode "${pair#*=}"
            return 0
        fi
    done
}

# has_query_param URL NAME: succeeds when NAME appears in URL's query.
has_query_param() {
    local query="${1#*\?}" pair
    [ "$query" != "$1" ] || return 1
    query="${query%%#*}"
    local IFS='&'
    for pair in $query; do
        [ "${pair%%=*}" = "$2" ] && return 0
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# Randomness and PKCE (RFC 7636 §4.1–4.2). These return non-zero instead of exiting, so that
# generate-pkce.sh can be sourced into an interactive shell.

_base64url() {
    # stdin: bytes; stdout: base64url without padding.
    if command -v openssl >/dev/null 2>&1; then
        openssl base64 -A | tr '+/' '-_' | tr -d '='
    else
        python3 -c 'import base64, sys
print(base64.urlsafe_b64encode(sys.stdin.buffer.read()).rstrip(b"=").decode(), end="")'
    fi
}

random_bytes() {
    if command -v openssl >/dev/null 2>&1; then
        openssl rand "$1"
    else
        python3 -c 'import os, sys; sys.stdout.buffer.write(os.urandom(int(sys.argv[1])))' "$1"
    fi
}

# random_state: 32 hex characters.
random_state() {
    random_bytes 16 | od -An -tx1 | tr -d ' \n'
}

# pkce_verifier: base64url of 32 random bytes (43 characters of the unreserved set).
pkce_verifier() {
    random_bytes 32 | _base64url
}

# pkce_challenge VERIFIER: BASE64URL(SHA256(ASCII(verifier))).
pkce_challenge() {
    if command -v openssl >/dev/null 2>&1; then
        printf '%s' "$1" | openssl dgst -sha256 -binary | _base64url
    else
        python3 -c 'import base64, hashlib, sys
digest = hashlib.sha256(sys.argv[1].encode("ascii")).digest()
print(base64.urlsafe_b64encode(digest).rstrip(b"=").decode(), end="")' "$1"
    fi
}

# ---------------------------------------------------------------------------------------------
# HTTP. `http METHOD URL [curl args…]` sets HTTP_STATUS and HTTP_BODY (`header NAME` reads a
# response header); it fails only when the server cannot be reached. It never follows redirects.
# Every request sends and keeps the cookies in COOKIE_JAR, like a browser.

HTTP_TMP=""
COOKIE_JAR=""

# http_tmp: create (once) the directory for response bodies and the cookie jar.
http_tmp() {
    if [ -z "$HTTP_TMP" ]; then
        HTTP_TMP="$(mktemp -d "${TMPDIR:-/tmp}/authgate-oauth2.XXXXXX")"
        COOKIE_JAR="$HTTP_TMP/cookies.txt"
        : >"$COOKIE_JAR"
    fi
}

# remove_http_tmp: delete it again (call from the script's EXIT trap).
remove_http_tmp() {
    if [ -n "$HTTP_TMP" ]; then
        rm -rf "$HTTP_TMP"
        HTTP_TMP=""
    fi
}

http() {
    local method="$1" url="$2"
    shift 2
    http_tmp
    HTTP_STATUS="$(curl -sS -X "$method" -o "$HTTP_TMP/body" -D "$HTTP_TMP/headers" \
        -w '%{http_code}' -b "$COOKIE_JAR" -c "$COOKIE_JAR" "$@" "$url" 2>"$HTTP_TMP/curl.err")" \
        || die "cannot reach $url: $(cat "$HTTP_TMP/curl.err") (is authgate running? set AUTHGATE_URL)"
    HTTP_BODY="$(cat "$HTTP_TMP/body")"
}

# header NAME: the value of a response header of the last request (original case).
header() {
    local name
    name="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')"
    tr -d '\r' <"$HTTP_TMP/headers" | awk -v n="$name" '
        { split($0, kv, ":"); if (tolower(kv[1]) == n) { sub(/^[^:]*:[ \t]*/, ""); v = $0 } }
        END { if (v != "") print v }'
}

# api METHOD PATH [curl args…]: a management-API call with the API token.
api() {
    local method="$1" path="$2"
    shift 2
    need_token
    http "$method" "$AUTHGATE_URL$path" -H "Authorization: Bearer $AUTHGATE_TOKEN" \
        -H 'Accept: application/json' "$@"
}

# hidden_field NAME < HTML: the value of <input type="hidden" name="NAME" value="…">.
hidden_field() {
    sed -n "s/.*name=\"$1\" value=\"\\([^\"]*\\)\".*/\\1/p" | head -n 1
}

# ---------------------------------------------------------------------------------------------
# The browser part of the flow, scripted: sign in, then consent.

# sign_in USERNAME PASSWORD: a session cookie in COOKIE_JAR, or an error.
sign_in() {
    local csrf
    http GET "$AUTHGATE_URL/login"
    [ "$HTTP_STATUS" = 200 ] || die "GET /login answered $HTTP_STATUS" "$HTTP_BODY"
    csrf="$(printf '%s' "$HTTP_BODY" | hidden_field csrf_token)"
    [ -n "$csrf" ] || die "the sign-in page has no csrf_token field" "$HTTP_BODY"
    http POST "$AUTHGATE_URL/login" --data-urlencode "username=$1" \
        --data-urlencode "password=$2" --data-urlencode "csrf_token=$csrf" \
        --data-urlencode "return_to=/"
    if [ "$HTTP_STATUS" != 303 ]; then
        local why
        why="$(printf '%s' "$HTTP_BODY" | sed -n 's/.*id="login-error">\([^<]*\)<.*/\1/p')"
        die "sign-in as '$1' failed with HTTP $HTTP_STATUS${why:+: $why}"
    fi
    grep -q 'authgate_session' "$COOKIE_JAR" || die "sign-in answered 303 but set no session cookie"
}

# consent AUTHORIZE_URL [allow|deny]: show the consent page, post the decision, and set
# CALLBACK_URL to where authgate redirects the browser. Also sets SESSION_CSRF: the session's
# CSRF token (the consent form's csrf_token), which a change made with the session cookie
# must send as X-CSRF-Token.
consent() {
    local url="$1" decision="${2:-allow}" csrf
    http GET "$url"
    case "$HTTP_STATUS" in
    200) ;;
    302)
        local location
        location="$(header location)"
        case "$location" in
        /login*) die "the authorization endpoint sent us to sign in: the session is missing" ;;
        esac
        [ "$decision" = allow ] \
            || die "the authorization endpoint redirected instead of showing consent: $location"
        # Remembered consent: this user allowed the same before, so no page is shown.
        CALLBACK_URL="$location"
        http GET "$AUTHGATE_URL/logout"
        # shellcheck disable=SC2034 # read by the scripts that source this file
        SESSION_CSRF="$(printf '%s' "$HTTP_BODY" | hidden_field csrf_token)"
        [ -n "$SESSION_CSRF" ] || die "the sign-out page has no csrf_token field" "$HTTP_BODY"
        return 0
        ;;
    *) die "GET /oauth2/authorize answered $HTTP_STATUS" "$(error_page_text)" ;;
    esac
    csrf="$(printf '%s' "$HTTP_BODY" | hidden_field csrf_token)"
    [ -n "$csrf" ] || die "the consent page has no csrf_token field" "$HTTP_BODY"
    # shellcheck disable=SC2034 # read by the scripts that source this file
    SESSION_CSRF="$csrf"
    http POST "$url" --data-urlencode "csrf_token=$csrf" --data-urlencode "decision=$decision"
    [ "$HTTP_STATUS" = 302 ] || die "the consent POST answered $HTTP_STATUS" "$(error_page_text)"
    CALLBACK_URL="$(header location)"
    [ -n "$CALLBACK_URL" ] || die "the consent POST answered 302 without a Location header"
}

# error_page_text: "error_code: description" from authgate's HTML error page, else the body.
error_page_text() {
    local code text
    code="$(printf '%s' "$HTTP_BODY" | sed -n 's/.*id="error-code">\([^<]*\)<.*/\1/p')"
    text="$(printf '%s' "$HTTP_BODY" | sed -n 's/.*id="error-description">\([^<]*\)<.*/\1/p')"
    if [ -n "$code" ]; then
        printf '%s: %s\n' "$code" "$text"
    else
        printf '%s\n' "$HTTP_BODY" | head -n 40
    fi
}
