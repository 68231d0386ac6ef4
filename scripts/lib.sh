# Shared by scripts/demo and scripts/test: install what a fresh Debian machine lacks.
# Sourced, not run.

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/jitbridge-target}"
APT_UPDATED=""

log() { printf '\n==> %s\n' "$*" >&2; }

apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    if [ -z "$APT_UPDATED" ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The C libraries the build links against (SQLite is bundled, but libpq and OpenSSL are not).
ensure_build_deps() {
    apt_install pkg-config libssl-dev libxml2-dev libxmlsec1-dev libclang-dev libsqlite3-dev libpq-dev curl ca-certificates
    if ! command -v cargo >/dev/null 2>&1; then
        apt_install cargo rustc
    fi
    local v
    v=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n1.88.0\n' "$v" | sort -V | head -1)" != "1.88.0" ]; then
        echo "error: jitbridge needs Rust 1.88 or newer, found $v; install a newer toolchain (e.g. with rustup)" >&2
        exit 1
    fi
}
