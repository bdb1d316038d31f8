# Sourced by Scripts/install and Scripts/image-check: the release build the Dockerfile's
# build stage makes (static Swift runtime and Foundation; glibc and libcurl stay dynamic),
# so the binary they install or check is the image's.
#
#   build_release      builds, then sets release_bin to the binary's path

build_release() {
  local flags=(-c release --static-swift-stdlib --product pachmigrate)
  echo "building pachmigrate (release, static Swift runtime)" >&2
  swift build "${flags[@]}" 2>&1 | tail -n 1 >&2
  [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
  release_bin="$(swift build "${flags[@]}" --show-bin-path)/pachmigrate"
}
