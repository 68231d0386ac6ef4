# jitbridge container image.
#
#   docker build -t jitbridge .
#   docker run --rm jitbridge --help
#
# Two stages: a full Rust toolchain builds the binary, and a slim Debian image runs it as an
# unprivileged user. The migrations/ and templates/ directories are embedded into the binary
# at compile time, so the runtime image holds nothing but the binary and its shared libraries.

# Cargo.toml asks for rust-version 1.88 or newer; "1" follows the newest stable release.
# Pin it (e.g. --build-arg RUST_VERSION=1.88) for reproducible builds.
ARG RUST_VERSION=1

############################################################################################
# Builder
############################################################################################
FROM rust:${RUST_VERSION}-bookworm AS builder

# Headers and tools for the crates that link C libraries: openssl (native-tls), libpq
# (diesel's postgres backend), libsqlite3 (sqlite backend; bundled, but the -dev package keeps
# pkg-config probes quiet), libxml2/xmlsec1 and libclang (SAML support, bindgen).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        pkg-config libssl-dev libxml2-dev libxmlsec1-dev libclang-dev libsqlite3-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# 1. Dependencies only: build the locked dependency graph against placeholder sources, so this
#    layer stays cached until Cargo.toml or Cargo.lock change.
# build.rs generates the libxmlsec1 bindings (bindgen, libclang) for src/idp/saml/dsig.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src \
        target/release/jitbridge target/release/jitbridge.d \
        target/release/.fingerprint/jitbridge-* \
        target/release/deps/jitbridge-* target/release/deps/libjitbridge-*

# 2. The crate itself. migrations/ and templates/ are read at compile time (embedded).
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
RUN cargo build --release --locked \
 && install -D -m 0755 target/release/jitbridge /out/jitbridge

############################################################################################
# Runtime
############################################################################################
FROM debian:bookworm-slim AS runtime

# Shared libraries the binary links (libssl3, libpq5, libxml2, libxmlsec1), CA roots for
# https identity providers, and curl for the container health check (GET /readyz on the
# operator listener, server.operator_listen).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        ca-certificates libssl3 libpq5 libxml2 libxmlsec1 libxmlsec1-openssl curl \
 && rm -rf /var/lib/apt/lists/*

# Unprivileged user with fixed ids, so volume and secret-file permissions are predictable.
RUN groupadd --system --gid 10001 jitbridge \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/jitbridge --no-create-home \
        --shell /usr/sbin/nologin jitbridge \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/jitbridge \
 && install -d -m 0755 /etc/jitbridge

COPY --from=builder /out/jitbridge /usr/local/bin/jitbridge

# The working directory only matters for the embedded default database (sqlite://jitbridge.db);
# deployments point [database] url at PostgreSQL.
WORKDIR /var/lib/jitbridge
USER 10001:10001

ENV JITBRIDGE_LOG=info
EXPOSE 8080

# Arguments go after the entrypoint, e.g. `serve --config /etc/jitbridge/jitbridge.toml`
# or `check-config --config ...`.
ENTRYPOINT ["jitbridge"]
CMD ["serve"]
