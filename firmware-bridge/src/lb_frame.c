/*
 * lb_frame.c — the frame layer: CRC-32, COBS, header, the stream decoder.
 *
 * A frame on the wire:  00 | COBS(header . payload . crc32) | 00
 * (PROTOCOL.md has the layouts). Bodies stay below 254 bytes, so COBS adds
 * exactly one byte and never needs a 0xFF code: the encoder works in place
 * in the caller's single output buffer.
 */
#include "lichen_bridge.h"
#include "lb_internal.h"

typedef char lb_body_fits_one_cobs_block[(LB_MAX_BODY < 254) ? 1 : -1];

/* CRC-32/ISO-HDLC, reflected, four bits at a time: a 64-byte table instead
 * of 1 KiB, about two table lookups per byte. */
static const uint32_t lb_crc_nibbles[16] = {
    0x00000000UL, 0x1DB71064UL, 0x3B6E20C8UL, 0x26D930ACUL,
    0x76DC4190UL, 0x6B6B51F4UL, 0x4DB26158UL, 0x5005713CUL,
    0xEDB88320UL, 0xF00F9344UL, 0xD6D6A3E8UL, 0xCB61B38CUL,
    0x9B64C2B0UL, 0x86D3D2D4UL, 0xA00AE278UL, 0xBDBDF21CUL,
};

uint32_t lb_crc32(uint32_t crc, const uint8_t *data, size_t len)
{
    size_t i;
    crc = ~crc;
    for (i = 0; i < len; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ lb_crc_nibbles[crc & 0x0FU];
        crc = (crc >> 4) ^ lb_crc_nibbles[crc & 0x0FU];
    }
    return ~crc;
}

size_t lb_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst)
{
    /* In place (dst == src - 1) is safe: before src[i] is read, at most
     * i + 1 bytes of dst have been written, and dst[i + 1] is src[i]. */
    size_t code_at = 0, out = 1, i;
    uint8_t code = 1;
    for (i = 0; i < len; i++) {
        uint8_t byte = src[i];
        if (byte == 0) {
            dst[code_at] = code;
            code_at = out++;
            code = 1;
        } else {
            dst[out++] = byte;
            code++;
        }
    }
    dst[code_at] = code;
    return out;
}

long lb_cobs_decode(uint8_t *chunk, size_t len)
{
    size_t in = 0, out = 0;
    while (in < len) {
        uint8_t code = chunk[in];
        size_t end = in + code, j;
        if (code == 0 || end > len)
            return LB_ERR_COBS;
        for (j = in + 1; j < end; j++) {
            if (chunk[j] == 0)
                return LB_ERR_COBS;
            chunk[out++] = chunk[j];
        }
        in = end;
        if (code != 0xFF && in < len)
            chunk[out++] = 0;
    }
    return (long)out;
}

void lb_encoder_init(lb_encoder *enc, uint16_t boot_id)
{
    enc->boot_id = boot_id;
    enc->counter = 0;
}

size_t lb__finish(lb_encoder *enc, uint8_t type, uint8_t *out, size_t cap,
                  size_t payload_len)
{
    uint8_t *body = out + 2; /* the payload already sits at body + header */
    size_t body_len = LB_HEADER_SIZE + payload_len, chunk;
    uint32_t crc;
    if (type > 0x0F || payload_len > LB_MAX_PAYLOAD || cap < body_len + LB_CRC_SIZE + 3)
        return 0;
    body[0] = (uint8_t)(LB_PROTOCOL_VERSION << 4 | type);
    lb__put16(body + 1, enc->boot_id);
    lb__put16(body + 3, enc->counter);
    crc = lb_crc32(0, body, body_len);
    lb__put16(body + body_len, (uint16_t)(crc & 0xFFFFU));
    lb__put16(body + body_len + 2, (uint16_t)(crc >> 16));
    body_len += LB_CRC_SIZE;
    out[0] = 0;
    chunk = lb_cobs_encode(body, body_len, out + 1);
    out[chunk + 1] = 0;
    enc->counter = (uint16_t)(enc->counter + 1U);
    return chunk + 2;
}

size_t lb_encode_frame(lb_encoder *enc, uint8_t type, const uint8_t *payload, size_t len,
                       uint8_t *out, size_t cap)
{
    size_t i;
    if (len > LB_MAX_PAYLOAD || cap < LB_HEADER_SIZE + LB_CRC_SIZE + 3 + len)
        return 0;
    for (i = 0; i < len; i++)
        out[2 + LB_HEADER_SIZE + i] = payload[i];
    return lb__finish(enc, type, out, cap, len);
}

void lb_decoder_init(lb_decoder *dec, uint8_t *buf, size_t cap)
{
    dec->buf = buf;
    dec->cap = cap < LB_MAX_CHUNK ? cap : LB_MAX_CHUNK;
    lb_decoder_reset(dec);
}

void lb_decoder_reset(lb_decoder *dec)
{
    dec->len = 0;
    dec->oversize = 0;
}

static int lb_parse_chunk(lb_decoder *dec, lb_frame *frame)
{
    uint8_t *body = dec->buf;
    long decoded = lb_cobs_decode(body, dec->len);
    size_t len;
    uint32_t crc;
    if (decoded < 0)
        return LB_ERR_COBS;
    len = (size_t)decoded;
    if (len < LB_HEADER_SIZE + LB_CRC_SIZE)
        return LB_ERR_SHORT;
    if (len > LB_MAX_BODY)
        return LB_ERR_OVERSIZE;
    len -= LB_CRC_SIZE;
    crc = (uint32_t)lb__get16(body + len) | (uint32_t)lb__get16(body + len + 2) << 16;
    if (lb_crc32(0, body, len) != crc)
        return LB_ERR_CRC;
    if (body[0] >> 4 != LB_PROTOCOL_VERSION)
        return LB_ERR_VERSION;
    frame->type = body[0] & 0x0FU;
    frame->boot_id = lb__get16(body + 1);
    frame->counter = lb__get16(body + 3);
    frame->payload = body + LB_HEADER_SIZE;
    frame->payload_len = len - LB_HEADER_SIZE;
    return LB_FRAME;
}

int lb_decoder_feed(lb_decoder *dec, uint8_t byte, lb_frame *frame)
{
    int result;
    if (byte != 0) {
        if (dec->len < dec->cap)
            dec->buf[dec->len++] = byte;
        else
            dec->oversize = 1;
        return LB_NEED_MORE;
    }
    if (dec->oversize)
        result = LB_ERR_OVERSIZE;
    else if (dec->len == 0)
        result = LB_NEED_MORE; /* two delimiters in a row */
    else
        result = lb_parse_chunk(dec, frame);
    lb_decoder_reset(dec);
    return result;
}
