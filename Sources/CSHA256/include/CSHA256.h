#ifndef CSHA256_H
#define CSHA256_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has the x86 SHA extensions (and SSSE3/SSE4.1), else 0.
int csha256_hardware_available(void);

/// SHA-256 compression of `blocks` consecutive 64-byte blocks into `state` (h0…h7), using
/// the SHA extensions. Only call when csha256_hardware_available() returned 1.
void csha256_hardware_compress(uint32_t state[8], const uint8_t *data, size_t blocks);

#endif
