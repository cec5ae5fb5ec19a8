# The metallb image: `metallb controller` and `metallb speaker` (deploy/ runs both).
#   docker build -t REGISTRY/metallb-xdp:TAG .
# The builder compiles the XDP program (nightly Rust with rust-src, linked by bpf-linker,
# through metallb-user's build.rs) and embeds it in the binary; the runtime stage holds
# the binary and FRR (BGP mode: Debian's frr and frr-pythontools, run by the speaker
# DaemonSet's frr container, reloaded by the speaker).

FROM rust:1-bookworm AS builder
# bpf-linker 0.10.4 links with the LLVM inside the Rust toolchain (0.11+ wants an
# external LLVM 21-23): the version cargo xtask setup installs.
RUN rustup toolchain install nightly --profile minimal --component rust-src \
    && cargo install bpf-linker@0.10.4 --locked
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p metallb-user

FROM debian:bookworm-slim
# `metallb frr` runs FRR's daemons as root, and FRR wants their user in its vty group.
RUN apt-get update \
    && apt-get install -y --no-install-recommends frr frr-pythontools \
    && usermod -a -G frrvty root \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /src/target/release/metallb /usr/local/bin/metallb
# Not root by default (the controller runs so). The speaker's DaemonSet runs it as UID 0
# with only the capabilities the datapath needs: Kubernetes gives a non-root container
# no ambient capabilities.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/metallb"]
