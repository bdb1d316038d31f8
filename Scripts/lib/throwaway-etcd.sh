# Sourced by Scripts/demo and Scripts/image-check: a throwaway single-node etcd on 127.0.0.1
# (free ports, data under a given directory), with the etcd and etcdctl first on PATH
# (Scripts/etcd-for picks a version's directory).
#
#   use_pachyderm_etcd               puts etcd 3.1.4 (Pachyderm 1.4's) first on PATH when it
#                                    is here, else Debian's; sets etcd_dir
#   start_throwaway_etcd WORKDIR     sets etcd_pid and etcd_endpoint, or returns 1
#   stop_throwaway_etcd

etcd_pid=""
etcd_endpoint=""

use_pachyderm_etcd() {
  etcd_dir=$(Scripts/etcd-for --find-only 3.1.4 2>/dev/null || Scripts/etcd-for 3.4)
  export PATH="$etcd_dir:$PATH" ETCDCTL_API=3
}

start_throwaway_etcd() {
  local work=$1 client peer attempt
  port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
  for attempt in $(seq 1 20); do
    client=$((20000 + RANDOM % 20000)); peer=$((client + 1))
    port_free "$client" && port_free "$peer" || continue
    etcd --name throwaway --data-dir "$work/etcd" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "throwaway=http://127.0.0.1:$peer" >"$work/etcd.log" 2>&1 &
    etcd_pid=$!
    for _ in $(seq 1 50); do
      kill -0 "$etcd_pid" 2>/dev/null || break
      if ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$client" endpoint health >/dev/null 2>&1; then
        etcd_endpoint="http://127.0.0.1:$client"
        return 0
      fi
      sleep 0.2
    done
    kill "$etcd_pid" 2>/dev/null; wait "$etcd_pid" 2>/dev/null || true; etcd_pid=""; rm -rf "$work/etcd"
  done
  echo "could not start etcd; see $work/etcd.log:" >&2
  cat "$work/etcd.log" >&2
  return 1
}

stop_throwaway_etcd() {
  if [ -n "$etcd_pid" ]; then kill "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true; fi
  etcd_pid=""
}
