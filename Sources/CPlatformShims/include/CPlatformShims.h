#ifndef CPLATFORMSHIMS_H
#define CPLATFORMSHIMS_H

// glibc calls that Swift's Glibc module does not expose (they need _GNU_SOURCE).

// Names the calling thread, as `top -H`, `ps -L` and debuggers show it (at most 15 bytes
// are kept; a longer name is cut, not refused). Returns pthread_setname_np's error number.
int pachmigrate_name_current_thread(const char *name);

#endif
