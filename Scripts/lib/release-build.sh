# Sourced by Scripts/install and Scripts/image-check: the release build the Dockerfile's
# build stage makes (static Swift runtime and Foundation; glibc and libcurl stay dynamic),
# so the binary they install or check is the image's. Keep the flags equal to the
# Dockerfile's `swift build` line.
#
#   build_release      builds, then sets release_bin to the binary's path

build_release() {
  local flags=(-c release --static-swift-stdlib --product pachmigrate) log
  log=$(mktemp)
  echo "building pachmigrate (release, static Swift runtime)" >&2
  if ! swift build "${flags[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  tail -n 1 "$log" >&2
  rm -f "$log"
  release_bin="$(swift build "${flags[@]}" --show-bin-path)/pachmigrate"
}
