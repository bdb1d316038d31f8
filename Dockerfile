# syntax=docker/dockerfile:1
# pachmigrate's container image (README "Container image"):
#   docker build -t pachmigrate:0.1.0 .
# VERSION must be the tool's version (Sources/PachmigrateCLI/Pachmigrate.swift,
# `toolVersion`); a test holds them equal. The runtime stage's packages are listed in
# deploy/image-packages.txt, which Scripts/image-check builds the same root file system from
# without a container engine.
ARG VERSION=0.1.0

FROM swift:6.3-bookworm AS build
# libcurl's headers for the CCurl system-library target.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libcurl4-openssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that a change to the sources does not fetch them again.
COPY Package.swift ./
RUN swift package resolve
COPY . .
# Static Swift runtime and Foundation: the runtime stage needs no Swift toolchain, only
# glibc and libcurl. Stripped (install -s): symbols are most of the unstripped binary.
RUN swift build -c release --static-swift-stdlib --product pachmigrate \
    && install -D -s -m 0755 "$(swift build -c release --static-swift-stdlib --show-bin-path)/pachmigrate" /out/pachmigrate

FROM debian:bookworm-slim
ARG VERSION
ARG SOURCE=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="pachmigrate" \
      org.opencontainers.image.description="Migrates a Pachyderm cluster's metadata in etcd from 1.4.x to 1.5.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}"
COPY deploy/image-packages.txt /tmp/image-packages.txt
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
         $(sed -e 's/#.*//' /tmp/image-packages.txt) \
    && rm -rf /var/lib/apt/lists/* /tmp/image-packages.txt
COPY --from=build /out/pachmigrate /usr/local/bin/pachmigrate
# The scan spills its sort runs to $TMPDIR; in Kubernetes that is an emptyDir, since the
# root file system is read-only there (deploy/).
ENV TMPDIR=/tmp
# Numeric, like Kubernetes' runAsUser: no passwd entry is needed, and none is added.
USER 65532:65532
ENTRYPOINT ["pachmigrate"]
