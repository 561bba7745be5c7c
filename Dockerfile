# The jobqueue image: the release binary on distroless, run as a numeric non-root user.
#   docker build -t jobqueue .
#   docker run -p 50051:50051 -v jobqueue-data:/var/lib/jobqueue jobqueue
#
# Builder and runtime are both Debian 12 (bookworm), so the binary runs on the glibc it
# was linked against. Bump the two tags together.

FROM rust:1.95.0-bookworm AS chef
# cargo-chef builds the dependencies in a layer of their own, reused until Cargo.toml or
# Cargo.lock change; a source edit then rebuilds only this workspace's crates.
RUN cargo install cargo-chef --version 0.1.77 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# sqlx-core is patched from a path outside the workspace ([patch.crates-io]): the recipe
# refers to it, so its real sources must be here when the dependencies are built.
COPY vendor/ vendor/
RUN cargo chef cook --release --locked --package jobqueue --recipe-path recipe.json
COPY . .
# The commit the image is built from, for the metrics' build info (.git is not in the
# build context): docker build --build-arg JOBQUEUE_BUILD=$(git rev-parse --short=12 HEAD)
ARG JOBQUEUE_BUILD=unknown
# build.rs runs the vendored protoc, so no system protoc is installed. The empty data
# folder is made here because the runtime image has no shell to make it.
RUN cargo build --release --locked --package jobqueue --bin jobqueue \
    && mkdir -p /out/data \
    && cp target/release/jobqueue /out/jobqueue

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/jobqueue /usr/local/bin/jobqueue
COPY --from=builder --chown=65532:65532 /out/data /var/lib/jobqueue
# Listen on every interface (the binary's default is loopback only); keep the SQLite
# database in the data folder, where a volume belongs.
ENV JOBQUEUE_LISTEN_ADDR=0.0.0.0:50051 \
    JOBQUEUE_DB_URL=sqlite:///var/lib/jobqueue/jobqueue.db?mode=rwc
VOLUME ["/var/lib/jobqueue"]
EXPOSE 50051
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/jobqueue"]
CMD ["serve"]
