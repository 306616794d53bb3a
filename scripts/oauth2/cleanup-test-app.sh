#!/usr/bin/env bash
# Delete an OAuth app (and with it its secrets, codes and tokens) through the management API.
#
#   scripts/oauth2/cleanup-test-app.sh [CLIENT_ID]     (default: $CLIENT_ID)
#
# Env: AUTHGATE_TOKEN (API token; SESSION_TOKEN accepted), AUTHGATE_URL.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
trap remove_http_tmp EXIT

need curl
need_token
CLIENT_ID="${1:-${CLIENT_ID:-}}"
[ -n "$CLIENT_ID" ] || die "usage: $0 CLIENT_ID (or set CLIENT_ID)"

api DELETE "/api/v2/oauth2-provider/apps/$(urlencode "$CLIENT_ID")"
[ "$HTTP_STATUS" = 204 ] ||
    die "DELETE /api/v2/oauth2-provider/apps/$CLIENT_ID answered $HTTP_STATUS, expected 204" \
        "$HTTP_BODY"
info "Deleted app $CLIENT_ID"
