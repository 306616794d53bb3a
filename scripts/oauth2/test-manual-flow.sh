#!/usr/bin/env bash
# Walk through the authorization code flow in your browser: this script generates a PKCE pair
# and a state, starts a local callback listener (callback_server.py) on CALLBACK_PORT, prints
# the authorization URL and opens it. Sign in, press Allow; the listener exchanges the code and
# prints the token response (JSON, on stdout), then everything stops.
#
#   eval "$(scripts/oauth2/setup-test-app.sh)"
#   scripts/oauth2/test-manual-flow.sh [--keep-running] [--no-browser]
#
# Env: CLIENT_ID and CLIENT_SECRET (required), AUTHGATE_URL (default http://localhost:3000),
# CALLBACK_PORT (default 9876: the redirect URI is http://localhost:$CALLBACK_PORT/callback; any
# port matches an app registered with http://localhost:9876/callback, RFC 8252 §7.3),
# NO_BROWSER=1 (print the URL only), CALLBACK_TIMEOUT (seconds to wait, default 600).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

KEEP_RUNNING=()
OPEN_BROWSER=1
[ "${NO_BROWSER:-0}" = 0 ] || OPEN_BROWSER=0
for arg in "$@"; do
    case "$arg" in
    --keep-running) KEEP_RUNNING=(--keep-running) ;;
    --no-browser) OPEN_BROWSER=0 ;;
    -h | --help)
        sed -n '2,14s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *) die "unknown argument $arg (try --help)" ;;
    esac
done

need curl
need python3 "the callback listener is a Python script"
[ -n "${CLIENT_ID:-}" ] || die "CLIENT_ID is not set: run eval \"\$(scripts/oauth2/setup-test-app.sh)\""
[ -n "${CLIENT_SECRET:-}" ] || die "CLIENT_SECRET is not set: run eval \"\$(scripts/oauth2/setup-test-app.sh)\""
CALLBACK_PORT="${CALLBACK_PORT:-9876}"
[[ "$CALLBACK_PORT" =~ ^[0-9]+$ ]] || die "CALLBACK_PORT must be a port number"
CALLBACK_URI="http://localhost:$CALLBACK_PORT/callback"

LISTENER_PID=""
stop_listener() {
    if [ -n "$LISTENER_PID" ]; then
        kill "$LISTENER_PID" 2>/dev/null || true
        wait "$LISTENER_PID" 2>/dev/null || true
        LISTENER_PID=""
    fi
    remove_http_tmp
}
trap stop_listener EXIT
trap 'exit 130' INT TERM

http GET "$AUTHGATE_URL/.well-known/oauth-authorization-server"
[ "$HTTP_STATUS" = 200 ] ||
    die "GET /.well-known/oauth-authorization-server answered $HTTP_STATUS" "$HTTP_BODY"
AUTHORIZATION_ENDPOINT="$(printf '%s' "$HTTP_BODY" | json_get authorization_endpoint)"
TOKEN_ENDPOINT="$(printf '%s' "$HTTP_BODY" | json_get token_endpoint)"
if [ -z "$AUTHORIZATION_ENDPOINT" ] || [ -z "$TOKEN_ENDPOINT" ]; then
    die "the metadata has no authorization_endpoint or token_endpoint" "$HTTP_BODY"
fi

CODE_VERIFIER="$(pkce_verifier)"
CODE_CHALLENGE="$(pkce_challenge "$CODE_VERIFIER")"
STATE="$(random_state)"
AUTHORIZE_URL="$AUTHORIZATION_ENDPOINT?response_type=code&client_id=$(urlencode "$CLIENT_ID")"
AUTHORIZE_URL+="&redirect_uri=$(urlencode "$CALLBACK_URI")&state=$STATE"
AUTHORIZE_URL+="&code_challenge=$CODE_CHALLENGE&code_challenge_method=S256"

CLIENT_ID="$CLIENT_ID" CLIENT_SECRET="$CLIENT_SECRET" CODE_VERIFIER="$CODE_VERIFIER" \
    python3 "$HERE/callback_server.py" --port "$CALLBACK_PORT" --token-url "$TOKEN_ENDPOINT" \
    --redirect-uri "$CALLBACK_URI" --state "$STATE" --authorize-url "$AUTHORIZE_URL" \
    --api-url "$AUTHGATE_URL" --timeout "${CALLBACK_TIMEOUT:-600}" "${KEEP_RUNNING[@]}" &
LISTENER_PID=$!

# Wait until the listener answers (or has died, e.g. because the port is taken).
for _ in $(seq 1 50); do
    kill -0 "$LISTENER_PID" 2>/dev/null || break
    curl -s -o /dev/null "http://127.0.0.1:$CALLBACK_PORT/" && break
    sleep 0.1
done
if ! kill -0 "$LISTENER_PID" 2>/dev/null; then
    status=0
    wait "$LISTENER_PID" || status=$?
    LISTENER_PID=""
    die "the callback listener stopped before the flow began (exit $status)"
fi

info ""
info "Open this URL in a browser, sign in and press Allow:"
info ""
info "  $AUTHORIZE_URL"
info ""
if [ "$OPEN_BROWSER" = 1 ] && command -v xdg-open >/dev/null 2>&1; then
    xdg-open "$AUTHORIZE_URL" >/dev/null 2>&1 || info "(xdg-open failed: open the URL yourself)"
fi
info "Waiting for the callback on $CALLBACK_URI …"

status=0
wait "$LISTENER_PID" || status=$?
LISTENER_PID=""
[ "$status" = 0 ] || die "the flow did not complete (callback listener exit $status)"
info "Done."
