#!/usr/bin/env bash
# Creates a call link through the REST API with an API token and prints the full link,
# `…/j/{id}#k={secret}`. The server shows the secret only in this answer: keep the link.
#
#   CONFAB_URL=http://127.0.0.1:8080 CONFAB_TOKEN=cf_… ./examples/create-link.sh "Weekly sync"
#
# Get a token on the dashboard ("API tokens") or with:
#   confab token create --user you@example.org --name scripts
set -euo pipefail

url="${CONFAB_URL:-http://127.0.0.1:8080}"
token="${CONFAB_TOKEN:?set CONFAB_TOKEN to an API token (cf_…)}"
title="${1:?usage: $0 TITLE}"

# Build the JSON body safely, whatever characters the title contains.
body=$(python3 -c 'import json, sys; print(json.dumps({"title": sys.argv[1]}))' "$title")

response=$(curl --silent --show-error --write-out '\n%{http_code}' \
  --header "Authorization: Bearer $token" \
  --header 'Content-Type: application/json' \
  --data "$body" \
  "$url/api/v1/links")
status="${response##*$'\n'}"
json="${response%$'\n'*}"

if [ "$status" != 201 ]; then
  echo "Confab answered $status: $json" >&2
  exit 1
fi
python3 -c 'import json, sys; print(json.load(sys.stdin)["url"])' <<<"$json"
