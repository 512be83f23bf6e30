/*
 * lb_internal.h — helpers shared by the library's sources; not installed,
 * not part of the API.
 */
#ifndef LB_INTERNAL_H
#define LB_INTERNAL_H

#include "lichen_bridge.h"

static inline void lb__put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFU);
    p[1] = (uint8_t)(v >> 8);
}

static inline uint16_t lb__get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

/* Write header, CRC, COBS and delimiters around a payload of payload_len
 * bytes already placed at out + 2 + LB_HEADER_SIZE; advance the counter.
 * Returns the frame's length, or 0 if it does not fit. */
size_t lb__finish(lb_encoder *enc, uint8_t type, uint8_t *out, size_t cap,
                  size_t payload_len);

#endif /* LB_INTERNAL_H */
