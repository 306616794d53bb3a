#!/usr/bin/env bash
# Create a test OAuth app (redirect URI http://localhost:9876/callback) and a client secret
# through the management API, and print `export` lines for them:
#
#   eval "$(scripts/oauth2/setup-test-app.sh)"
#
# Env: AUTHGATE_TOKEN (API token; SESSION_TOKEN accepted), AUTHGATE_URL (default
# http://localhost:3000), APP_NAME (default test-mcp-<epoch>), REDIRECT_URI.
# Messages go to stderr; stdout carries only the export lines.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
trap remove_http_tmp EXIT

need curl
need_token
APP_NAME="${APP_NAME:-test-mcp-$(date +%s)-$RANDOM}"

info "Creating app '$APP_NAME' with redirect URI $REDIRECT_URI on $AUTHGATE_URL"
api POST /api/v2/oauth2-provider/apps -H 'Content-Type: application/json' \
    --data "$(app_json "$APP_NAME" "$REDIRECT_URI")"
[ "$HTTP_STATUS" = 201 ] ||
    die "POST /api/v2/oauth2-provider/apps answered $HTTP_STATUS, expected 201" "$HTTP_BODY"
CLIENT_ID="$(printf '%s' "$HTTP_BODY" | json_get id)"
[ -n "$CLIENT_ID" ] || die "the created app has no id" "$HTTP_BODY"

api POST "/api/v2/oauth2-provider/apps/$CLIENT_ID/secrets"
if [ "$HTTP_STATUS" != 201 ]; then
    status="$HTTP_STATUS" body="$HTTP_BODY"
    # Leave nothing half-made behind.
    api DELETE "/api/v2/oauth2-provider/apps/$CLIENT_ID" || true
    die "POST /api/v2/oauth2-provider/apps/$CLIENT_ID/secrets answered $status, expected 201" \
        "$body"
fi
CLIENT_SECRET="$(printf '%s' "$HTTP_BODY" | json_get client_secret_full)"
[ -n "$CLIENT_SECRET" ] || die "the created secret has no client_secret_full" "$HTTP_BODY"

info "Created client_id $CLIENT_ID and a client secret (shown once, in the export lines)."
info "Remove it with: scripts/oauth2/cleanup-test-app.sh $CLIENT_ID"
printf 'export CLIENT_ID=%q\n' "$CLIENT_ID"
printf 'export CLIENT_SECRET=%q\n' "$CLIENT_SECRET"
printf 'export APP_NAME=%q\n' "$APP_NAME"
printf 'export AUTHGATE_URL=%q\n' "$AUTHGATE_URL"
