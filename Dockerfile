# syntax=docker/dockerfile:1
#
# stickyroute: the balancer (default command) and the demo node (`demo-node …`) in one image.
#   docker build -t stickyroute .
#   docker run --rm -p 8080:8080 -p 9901:9901 \
#     -v "$PWD/balancer.yaml:/etc/stickyroute/balancer.yaml:ro" stickyroute
# The config must bind the listener and the admin listener to 0.0.0.0 (8080, 9901) to be
# reachable through published ports; see deploy/balancer.compose.yaml.

# ---- build ---------------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS build
WORKDIR /src
# gcc and libc6-dev (for ring) come with the slim Rust image; make builds jemalloc, the
# binary's allocator (the `jemalloc` feature); nothing links OpenSSL.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
# balancer.yaml: a unit test of config.rs includes it (not needed by this build, kept so it works).
COPY Cargo.toml Cargo.lock balancer.yaml ./
# .cargo/config.toml: jemalloc's cache settings, baked in at build time.
COPY .cargo ./.cargo
COPY src ./src
COPY benches ./benches
# Cache mounts keep the registry and the target directory between builds (BuildKit); the
# binary is copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin stickyroute \
 && install -m 0755 target/release/stickyroute /usr/local/bin/stickyroute

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim
# curl: the HEALTHCHECK below (and the demo nodes' health check in docker-compose.yml).
# ca-certificates: rediss:// and TLS upstreams.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin stickyroute \
 && mkdir -p /etc/stickyroute
COPY --from=build /usr/local/bin/stickyroute /usr/local/bin/stickyroute
USER stickyroute:stickyroute
# 8080: the proxy listener; 9901: the admin listener (status page, JSON API, /metrics).
EXPOSE 8080 9901
# Liveness of the balancer: its admin listener answers. curl rather than `stickyroute ctl
# status`: one probe tool for both roles of the image (demo-node containers override this with
# GET :8080/health in docker-compose.yml), and a probe that does not depend on the pool's state
# (a node being down is what failover is for, not a sick balancer).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "--max-time", "2", "http://127.0.0.1:9901/live"]
# SIGTERM (docker stop) drains in-flight requests; keep docker's stop timeout above --grace.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/stickyroute"]
CMD ["serve", "--config", "/etc/stickyroute/balancer.yaml", "--grace", "8s"]
