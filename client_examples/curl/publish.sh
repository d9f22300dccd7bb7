#!/usr/bin/env sh
# Publish a notification over HTTP with curl and a publisher token.
#   TOKEN=$(switchboard token --user svc --publisher) ./publish.sh user_1 "Hello from curl"
set -eu
URL=${URL:-http://127.0.0.1:8000/graphql}
GROUP=${1:?usage: publish.sh GROUP MESSAGE [STATUS]}
MESSAGE=${2:?usage: publish.sh GROUP MESSAGE [STATUS]}
STATUS=${3:-INFO}
: "${TOKEN:?set TOKEN to a publisher token: switchboard token --user svc --publisher}"

# Variables carry the values, so no quoting of the message inside the query is needed.
BODY=$(printf '{"query":"mutation($g: String!, $m: String!, $s: NotifyStatus!) { sendNotify(group: $g, message: $m, status: $s) { id group } }","variables":{"g":"%s","m":"%s","s":"%s"}}' \
  "$GROUP" "$(printf '%s' "$MESSAGE" | sed 's/\\/\\\\/g; s/"/\\"/g')" "$STATUS")

curl --silent --show-error --fail \
  -H "Content-Type: application/json" \
  -H "Authorization: Bearer $TOKEN" \
  --data "$BODY" \
  "$URL"
echo
