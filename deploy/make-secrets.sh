#!/bin/sh
# Create the secret files that deploy/compose.yaml mounts, with fresh random values.
#
#   deploy/make-secrets.sh [DIR]        (DIR defaults to deploy/secrets)
#
# Existing files are kept, so running it again never rotates a secret by accident; delete a
# file to regenerate it. The directory is 0700 (only you, on the host), the files 0644 so that
# the non-root users inside the containers can read their bind-mounted copies.
# TLS: a short-lived self-signed certificate for localhost is created only when none exists;
# replace tls_fullchain.pem / tls_privkey.pem with your real certificate and key.
set -eu

dir=${1:-$(dirname "$0")/secrets}
domain=${BASTION_DOMAIN:-localhost}
umask 022
mkdir -p "$dir"
chmod 0700 "$dir"

random() {
    # 32 random bytes as hex: URL-safe, so it can sit inside a connection URL unescaped.
    openssl rand -hex 32
}

put() {
    # put NAME VALUE: write a secret file unless it exists already. No trailing newline:
    # not every reader of *_FILE settings strips one.
    if [ ! -e "$dir/$1" ]; then
        printf '%s' "$2" > "$dir/$1"
        chmod 0644 "$dir/$1"
        echo "created $dir/$1"
    fi
}

put secret_key "$(random)"
put metrics_token "$(random)"
put grafana_admin_password "$(random)"
put postgres_password "$(random)"

if [ ! -e "$dir/postgres_app_password" ] || [ ! -e "$dir/database_url" ]; then
    rm -f "$dir/postgres_app_password" "$dir/database_url"
    app_password=$(random)
    put postgres_app_password "$app_password"
    put database_url "postgresql+psycopg://bastion_app:${app_password}@postgres:5432/bastion"
fi
if [ ! -e "$dir/postgres_owner_password" ] || [ ! -e "$dir/migrate_database_url" ]; then
    rm -f "$dir/postgres_owner_password" "$dir/migrate_database_url"
    owner_password=$(random)
    put postgres_owner_password "$owner_password"
    put migrate_database_url "postgresql+psycopg://bastion_owner:${owner_password}@postgres:5432/bastion"
fi
if [ ! -e "$dir/redis_password" ] || [ ! -e "$dir/redis_url" ]; then
    rm -f "$dir/redis_password" "$dir/redis_url"
    redis_password=$(random)
    put redis_password "$redis_password"
    put redis_url "redis://:${redis_password}@redis:6379/0"
fi
# API signing keys: a one-entry JSON keyset with a fresh Ed25519 key, the same shape as
# `flask --app bastion api new-key` prints (PEM newlines written as \n inside the JSON).
if [ ! -e "$dir/jwt_keys" ]; then
    pem=$(openssl genpkey -algorithm ed25519 | awk 'BEGIN { ORS = "" } { print $0 "\\n" }')
    put jwt_keys "[{\"kid\": \"$(date -u +%Y-%m)-$(openssl rand -hex 4)\", \"pem\": \"$pem\"}]"
fi
# Replace with your SMTP relay, e.g. smtp://user:password@smtp.example.com:587 (STARTTLS).
put mail_url "smtp://localhost:25"

if [ ! -e "$dir/tls_fullchain.pem" ] || [ ! -e "$dir/tls_privkey.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=$domain" -addext "subjectAltName=DNS:$domain" \
        -keyout "$dir/tls_privkey.pem" -out "$dir/tls_fullchain.pem" 2>/dev/null
    chmod 0644 "$dir/tls_privkey.pem" "$dir/tls_fullchain.pem"
    echo "created a self-signed certificate for $domain (replace it for real use)"
fi

# TLS inside the deployment (nginx and Prometheus to gunicorn, Grafana to Prometheus, and the
# health checks): a private CA that those clients pin, and certificates for `app` and
# `prometheus` (each also for localhost and 127.0.0.1). The CA key is used once and not kept:
# to renew, delete internal_ca.pem and run this again (every service mounts the new files on
# restart).
if [ ! -e "$dir/internal_ca.pem" ] || [ ! -e "$dir/internal_tls_cert.pem" ] \
        || [ ! -e "$dir/internal_tls_key.pem" ] || [ ! -e "$dir/internal_prometheus_cert.pem" ] \
        || [ ! -e "$dir/internal_prometheus_key.pem" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
        -subj "/CN=Bastion internal CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
    issue() {
        # issue NAME: a server certificate for NAME, localhost and 127.0.0.1.
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
            -keyout "$work/$1.key" -out "$work/$1.csr" 2>/dev/null
        printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" "subjectAltName=DNS:$1,DNS:localhost,IP:127.0.0.1" \
            > "$work/$1.ext"
        openssl x509 -req -in "$work/$1.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
            -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 -extfile "$work/$1.ext" \
            -out "$work/$1.pem" 2>/dev/null
    }
    issue app
    issue prometheus
    keep() {
        cp "$work/$1" "$dir/$2"
        chmod 0644 "$dir/$2"
        echo "created $dir/$2"
    }
    keep ca.pem internal_ca.pem
    keep app.pem internal_tls_cert.pem
    keep app.key internal_tls_key.pem
    keep prometheus.pem internal_prometheus_cert.pem
    keep prometheus.key internal_prometheus_key.pem
fi
