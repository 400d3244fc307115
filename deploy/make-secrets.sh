#!/bin/sh
# Create the secret files that deploy/compose.yaml mounts, with fresh random values.
#
#   deploy/make-secrets.sh [DIR]        (DIR defaults to deploy/secrets)
#
# Existing files are kept, so running it again never rotates a secret by accident; delete a
# file to regenerate it (an empty file, left by an interrupted run, is regenerated too; a
# redis_url from before the Redis ACL is rewritten to name its user, same password). The
# directory is 0700 (only you, on the host), the files 0644 so that the non-root users inside
# the containers can read their bind-mounted copies. Every value is generated before its file
# is written, and a failure stops the script: it never writes an empty or partial secret.
# TLS: a short-lived self-signed certificate for localhost is created only when none exists;
# replace tls_fullchain.pem / tls_privkey.pem with your real certificate and key.
set -eu

dir=${1:-$(dirname "$0")/secrets}
domain=${BASTION_DOMAIN:-localhost}
# Files are created private; `put` opens each one up to 0644 only once its value is complete.
umask 077
if ! command -v openssl > /dev/null 2>&1; then
    echo "make-secrets.sh: openssl is needed to generate the secrets; nothing was written" >&2
    exit 1
fi
mkdir -p "$dir"
chmod 0700 "$dir"

random() {
    # 32 random bytes as hex: URL-safe, so it can sit inside a connection URL unescaped.
    openssl rand -hex 32
}

missing() {
    # missing NAME...: true when any of the files is absent or empty.
    for _file in "$@"; do
        [ -s "$dir/$_file" ] || return 0
    done
    return 1
}

put() {
    # put NAME VALUE: write a secret file unless it exists already (non-empty). No trailing
    # newline: not every reader of *_FILE settings strips one. An empty value is refused: it
    # means the generator failed, and a secret file must never be written blank.
    if missing "$1"; then
        if [ -z "$2" ]; then
            echo "make-secrets.sh: no value generated for $1" >&2
            exit 1
        fi
        printf '%s' "$2" > "$dir/$1.tmp"
        chmod 0644 "$dir/$1.tmp"
        mv -f "$dir/$1.tmp" "$dir/$1"
        echo "created $dir/$1"
    fi
}

# Each value is assigned first (so that `set -e` sees a failing generator), then written.
for name in secret_key metrics_token grafana_admin_password postgres_password; do
    if missing "$name"; then
        value=$(random)
        put "$name" "$value"
    fi
done

if missing postgres_app_password database_url; then
    rm -f "$dir/postgres_app_password" "$dir/database_url"
    app_password=$(random)
    put postgres_app_password "$app_password"
    put database_url "postgresql+psycopg://bastion_app:${app_password}@postgres:5432/bastion"
fi
if missing postgres_owner_password migrate_database_url; then
    rm -f "$dir/postgres_owner_password" "$dir/migrate_database_url"
    owner_password=$(random)
    put postgres_owner_password "$owner_password"
    put migrate_database_url "postgresql+psycopg://bastion_owner:${owner_password}@postgres:5432/bastion"
fi
# Redis: the app signs in as the ACL user `bastion` (deploy/redis/users.acl); `default` is off.
if missing redis_password redis_url; then
    rm -f "$dir/redis_password" "$dir/redis_url"
    redis_password=$(random)
    put redis_password "$redis_password"
    put redis_url "redis://bastion:${redis_password}@redis:6379/0"
fi
# The URL this script wrote before Redis had users names none, which now means the disabled
# `default` user: it is rewritten to name `bastion`, with the same password (not a rotation).
# `[` and `printf` are shell built-ins, so the password never shows on a command line.
redis_password=$(cat "$dir/redis_password")
if [ "$(cat "$dir/redis_url")" = "redis://:${redis_password}@redis:6379/0" ]; then
    rm -f "$dir/redis_url"
    put redis_url "redis://bastion:${redis_password}@redis:6379/0"
fi
# API signing keys: a one-entry JSON keyset with a fresh Ed25519 key, the same shape as
# `flask --app bastion api new-key` prints (PEM newlines written as \n inside the JSON).
# The key goes to a variable on its own first: in a pipeline, a failing openssl would be
# hidden by awk's success.
if missing jwt_keys; then
    key=$(openssl genpkey -algorithm ed25519)
    pem=$(printf '%s\n' "$key" | awk 'BEGIN { ORS = "" } { print $0 "\\n" }')
    kid="$(date -u +%Y-%m)-$(openssl rand -hex 4)"
    case "$pem" in
        *"BEGIN PRIVATE KEY"*) ;;
        *) echo "make-secrets.sh: openssl did not produce an Ed25519 key" >&2; exit 1 ;;
    esac
    put jwt_keys "[{\"kid\": \"$kid\", \"pem\": \"$pem\"}]"
fi
# Replace with your SMTP relay, e.g. smtp://user:password@smtp.example.com:587 (STARTTLS).
# Production needs one (mail never goes to files or the log there); nothing answers at this
# placeholder inside the container, so until then every message is logged as not sent.
put mail_url "smtp://localhost:25"

if missing tls_fullchain.pem tls_privkey.pem; then
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
if missing internal_ca.pem internal_tls_cert.pem internal_tls_key.pem \
        internal_prometheus_cert.pem internal_prometheus_key.pem; then
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
