#!/usr/bin/env bash
# Creates the Grafana organisations the JustWalk provisioning names, before Grafana starts.
#
# Grafana cannot create organisations from provisioning files, and refuses to start when a
# provisioning file names an organisation that does not exist. So the compose service
# `grafana-orgs` (the Grafana image, Grafana's data volume) runs, once before `grafana`:
#
#   create-orgs.sh --start-server /etc/grafana/justwalk/organisations.txt
#
# It starts Grafana on loopback with no provisioning at all, creates every organisation of
# the file (lines "<id> <name>", written by `justwalk dashboards build`) that is missing,
# checks that each has the id the provisioning expects, and stops Grafana again. Without
# --start-server it talks to the Grafana at $GRAFANA_URL (one already running; the tests).
# Credentials: GF_SECURITY_ADMIN_USER, GF_SECURITY_ADMIN_PASSWORD. Exit 1, with a message
# saying what to change, when an id does not match: a clinic's data source must never land
# in another clinic's organisation.
set -euo pipefail

start_server=0
if [[ "${1:-}" == "--start-server" ]]; then
  start_server=1
  shift
fi
orgs_file=${1:?usage: create-orgs.sh [--start-server] ORGANISATIONS_FILE}
user=${GF_SECURITY_ADMIN_USER:-admin}
password=${GF_SECURITY_ADMIN_PASSWORD:?GF_SECURITY_ADMIN_PASSWORD is not set}
url=${GRAFANA_URL:-http://127.0.0.1:3000}
server_pid=""

fail() {
  echo "create-orgs: $*" >&2
  exit 1
}

stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap stop_server EXIT

[[ -r "$orgs_file" ]] || fail "cannot read $orgs_file"

if ((start_server)); then
  empty=$(mktemp -d)
  mkdir -p "$empty/datasources" "$empty/dashboards" "$empty/alerting" "$empty/plugins" \
    "$empty/notifiers"
  port=${CREATE_ORGS_PORT:-3999}
  GF_PATHS_PROVISIONING="$empty" GF_SERVER_HTTP_ADDR=127.0.0.1 GF_SERVER_HTTP_PORT="$port" \
    /run.sh >/tmp/create-orgs-grafana.log 2>&1 &
  server_pid=$!
  url="http://127.0.0.1:$port"
fi

for _ in $(seq 1 180); do
  if curl -fsS "$url/api/health" >/dev/null 2>&1; then
    break
  fi
  if [[ -n "$server_pid" ]] && ! kill -0 "$server_pid" 2>/dev/null; then
    tail -n 30 /tmp/create-orgs-grafana.log >&2 || true
    fail "Grafana exited while starting"
  fi
  sleep 1
done
curl -fsS "$url/api/health" >/dev/null 2>&1 || fail "Grafana at $url did not answer /api/health"

# api METHOD PATH [JSON]: sets $status and $body
api() {
  local out
  local args=(-sS -u "$user:$password" -X "$1" -H "Content-Type: application/json"
    -w $'\n%{http_code}')
  if [[ $# -ge 3 ]]; then
    args+=(--data "$3")
  fi
  out=$(curl "${args[@]}" "$url$2") || fail "$1 $2: request failed"
  status=${out##*$'\n'}
  body=${out%$'\n'*}
}

json_number() { # KEY: the first "KEY":<number> of $body
  sed -n "s/.*\"$1\":\([0-9][0-9]*\).*/\1/p" <<<"$body" | head -n 1
}

json_string() { # KEY: the first "KEY":"<text>" of $body
  sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" <<<"$body" | head -n 1
}

while read -r id name _rest; do
  [[ -z "${id:-}" || "$id" == \#* ]] && continue
  [[ "$id" =~ ^[0-9]+$ && -n "${name:-}" ]] || fail "bad line in $orgs_file: $id $name"
  api GET "/api/orgs/name/$name"
  if [[ "$status" == 200 ]]; then
    got=$(json_number id)
    [[ "$got" == "$id" ]] || fail "organisation $name has id $got in Grafana, the provisioning" \
      "expects $id: set grafana_org_id of clinic $name to $got in the clinics file"
    echo "organisation $id $name exists"
    continue
  fi
  [[ "$status" == 404 ]] || fail "GET /api/orgs/name/$name: HTTP $status $body"
  api GET "/api/orgs/$id"
  if [[ "$status" == 200 ]]; then
    fail "id $id is organisation '$(json_string name)' in Grafana: give clinic $name" \
      "another grafana_org_id in the clinics file"
  fi
  api POST /api/orgs "{\"name\":\"$name\"}"
  [[ "$status" == 200 ]] || fail "creating organisation $name: HTTP $status $body"
  got=$(json_number orgId)
  [[ "$got" == "$id" ]] || fail "organisation $name was created with id $got, not $id" \
    "(Grafana numbers them in creation order): set grafana_org_id of clinic $name to $got"
  echo "organisation $id $name created"
done <"$orgs_file"
