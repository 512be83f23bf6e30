/* Stand-in for the Pico SDK's pico/rand.h: declarations only. */
#ifndef STUB_PICO_RAND_H
#define STUB_PICO_RAND_H
#include <stdint.h>
uint32_t get_rand_32(void);
#endif
