/*
 * lichen_bridge.h — frames for the Lichen serial bridge (protocol version 1).
 *
 * A portable C99 library for microcontrollers: no malloc, no stdio, no libc
 * at all (only <stdint.h> and <stddef.h>), no global state. The caller owns
 * every buffer. PROTOCOL.md describes the bytes; this header the API.
 *
 * Sending (the device's usual job):
 *
 *     static const lb_channel channels[] = {
 *         {"temperature", "\xc2\xb0" "C", "temperature", -2, LB_NUMBER},
 *         {"door", "", "door", 0, LB_BOOLEAN},
 *     };
 *     lb_encoder enc;
 *     uint8_t frame[LB_MAX_FRAME];
 *     lb_encoder_init(&enc, boot_id);          // a new boot id on every boot
 *     for (uint8_t id = 0; id < 2; id++) {     // at boot, then now and then
 *         size_t n = lb_encode_describe(&enc, channels, 2, id, frame, sizeof frame);
 *         uart_write(frame, n);
 *     }
 *     lb_reading r[2] = {{0, LB_OK, 2137}, {1, LB_OK, 1}};   // 21.37 °C, open
 *     uart_write(frame, lb_encode_readings(&enc, r, 2, frame, sizeof frame));
 *
 * Receiving (the host's REQUEST frames on a device; any frame in tests):
 *
 *     uint8_t rx[LB_MAX_CHUNK];
 *     lb_decoder dec;
 *     lb_frame f;
 *     lb_decoder_init(&dec, rx, sizeof rx);
 *     while (uart_available())
 *         if (lb_decoder_feed(&dec, uart_read(), &f) == LB_FRAME && f.type == LB_REQUEST)
 *             send_description();
 */
#ifndef LICHEN_BRIDGE_H
#define LICHEN_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LB_PROTOCOL_VERSION 1

/* Sizes, in bytes. */
#define LB_HEADER_SIZE 5    /* version<<4|type, boot id u16 LE, counter u16 LE */
#define LB_CRC_SIZE 4       /* CRC-32/ISO-HDLC of header and payload, u32 LE */
#define LB_MAX_BODY 250     /* header + payload + CRC, before COBS */
#define LB_MAX_PAYLOAD (LB_MAX_BODY - LB_HEADER_SIZE - LB_CRC_SIZE) /* 241 */
#define LB_MAX_CHUNK (LB_MAX_BODY + 1)  /* COBS adds one byte below 254 */
#define LB_MAX_FRAME (LB_MAX_CHUNK + 2) /* a 0x00 delimiter on each side */

#define LB_MAX_CHANNELS 64
#define LB_MAX_NAME 32  /* [a-z][a-z0-9_]* */
#define LB_MAX_UNIT 16  /* printable UTF-8, e.g. "\xc2\xb0" "C" for °C */
#define LB_MAX_CLASS 24 /* [a-z0-9_]*, e.g. "temperature"; "" for none */
#define LB_MIN_EXPONENT (-12)
#define LB_MAX_EXPONENT 12

/* Frame types (the low nibble of the first byte). */
enum lb_type {
    LB_DESCRIBE = 1, /* device -> host: one channel's name, unit, resolution */
    LB_READINGS = 2, /* device -> host: values of channels sampled together */
    LB_REQUEST = 3   /* host -> device: payload LB_REQUEST_DESCRIBE */
};
#define LB_REQUEST_DESCRIBE 1

/* What a channel's integers mean. */
enum lb_kind {
    LB_NUMBER = 0, /* value = raw * 10^exponent */
    LB_BOOLEAN = 1 /* value = raw != 0; exponent must be 0 */
};

/* The device's verdict on one value (top two bits of a READINGS item). */
enum lb_status {
    LB_OK = 0,
    LB_CLIPPED = 1, /* the sensor saturated: the value is a bound */
    LB_FAULT = 2    /* the sensor failed: the value is meaningless */
};

/* Results of lb_decoder_feed and the parse functions. */
enum lb_result {
    LB_NEED_MORE = 0,       /* no complete frame yet */
    LB_FRAME = 1,           /* *frame holds a frame whose CRC matched */
    LB_ERR_COBS = -1,       /* a COBS code byte points past the chunk */
    LB_ERR_SHORT = -2,      /* fewer than header + CRC bytes */
    LB_ERR_OVERSIZE = -3,   /* more than LB_MAX_CHUNK bytes (or the buffer) */
    LB_ERR_CRC = -4,        /* the CRC-32 does not match */
    LB_ERR_VERSION = -5,    /* not protocol version 1 */
    LB_ERR_PAYLOAD = -6     /* CRC matched, payload breaks its type's layout */
};

/* One channel, as the device describes it. Strings are NUL-terminated. */
typedef struct {
    const char *name;         /* field name, e.g. "temperature" */
    const char *unit;         /* e.g. "%"; "" for none */
    const char *device_class; /* e.g. "humidity"; "" for none */
    int8_t exponent;          /* resolution = 10^exponent, -12..12 */
    uint8_t kind;             /* enum lb_kind */
} lb_channel;

/* One value of a READINGS frame. */
typedef struct {
    uint8_t channel; /* 0..63, the channel's index in the described table */
    uint8_t status;  /* enum lb_status */
    int64_t value;   /* in units of the channel's resolution: 21.37 at -2 is 2137 */
} lb_reading;

/* The sender's state: its boot id and the counter of its next frame. */
typedef struct {
    uint16_t boot_id;
    uint16_t counter;
} lb_encoder;

/* A received frame. payload points into the decoder's buffer and stays
 * valid until the next call to lb_decoder_feed. */
typedef struct {
    uint8_t type; /* enum lb_type, or a reserved value to ignore */
    uint16_t boot_id;
    uint16_t counter;
    const uint8_t *payload;
    size_t payload_len;
} lb_frame;

/* A DESCRIBE payload, parsed. Texts point into the frame and are NOT
 * NUL-terminated; use the lengths. */
typedef struct {
    uint8_t count, id, kind;
    int8_t exponent;
    const char *name, *unit, *device_class;
    uint8_t name_len, unit_len, class_len;
} lb_description;

/* Walks the values of a READINGS frame (see lb_readings_next). */
typedef struct {
    const lb_frame *frame;
    size_t offset;
    uint32_t seen[2]; /* channels met so far: a channel may appear once */
} lb_readings_iter;

typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
    uint8_t oversize; /* the current chunk outgrew buf: skip to the delimiter */
} lb_decoder;

/* ---- sending ------------------------------------------------------------
 * Each lb_encode_* writes one complete frame (both delimiters included) to
 * out and returns its length, at most LB_MAX_FRAME; the counter then
 * advances (wrapping at 65536). On invalid arguments, or if cap is too
 * small, it returns 0, writes nothing useful and leaves the counter alone. */

/* boot_id must differ from the previous boot's: a counter kept in EEPROM
 * or flash, or a hardware random number (see PROTOCOL.md, "Boot id"). */
void lb_encoder_init(lb_encoder *enc, uint16_t boot_id);

/* DESCRIBE frame for channels[id] of a device with count channels. */
size_t lb_encode_describe(lb_encoder *enc, const lb_channel *channels, uint8_t count,
                          uint8_t id, uint8_t *out, size_t cap);

/* READINGS frame holding count values (each channel at most once). */
size_t lb_encode_readings(lb_encoder *enc, const lb_reading *readings, uint8_t count,
                          uint8_t *out, size_t cap);

/* REQUEST frame (what a host sends; here for tests and bridges). */
size_t lb_encode_request(lb_encoder *enc, uint8_t what, uint8_t *out, size_t cap);

/* Any frame type with a raw payload (reserved types: for tests). */
size_t lb_encode_frame(lb_encoder *enc, uint8_t type, const uint8_t *payload, size_t len,
                       uint8_t *out, size_t cap);

/* ---- receiving ---------------------------------------------------------- */

/* buf holds one chunk; LB_MAX_CHUNK bytes take any valid frame. */
void lb_decoder_init(lb_decoder *dec, uint8_t *buf, size_t cap);

/* Feed one byte. Returns LB_NEED_MORE, LB_FRAME (*frame is set), or an
 * LB_ERR_* for a chunk that was not a frame; decoding then goes on with
 * the next byte. Never reads or writes outside buf. */
int lb_decoder_feed(lb_decoder *dec, uint8_t byte, lb_frame *frame);

/* Forget a partial chunk (the line was reset). */
void lb_decoder_reset(lb_decoder *dec);

/* Parse a DESCRIBE frame: LB_FRAME, or LB_ERR_PAYLOAD. */
int lb_parse_describe(const lb_frame *frame, lb_description *out);

/* Parse a REQUEST frame: LB_FRAME and *what, or LB_ERR_PAYLOAD. */
int lb_parse_request(const lb_frame *frame, uint8_t *what);

/* Walk a READINGS frame: init, then call next until it returns 0 (done)
 * or LB_ERR_PAYLOAD. Returns LB_FRAME with *out set for each value. A frame
 * is valid only if the walk ends with 0: check that before using values. */
void lb_readings_begin(lb_readings_iter *it, const lb_frame *frame);
int lb_readings_next(lb_readings_iter *it, lb_reading *out);

/* ---- building blocks ---------------------------------------------------- */

/* CRC-32/ISO-HDLC (zlib's): crc = lb_crc32(0, data, len), or chain calls. */
uint32_t lb_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* COBS-encode len bytes (len < 254) from src to dst (dst may be src - 1:
 * it works in place). Returns len + 1. */
size_t lb_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst);

/* COBS-decode a chunk in place (no 0x00 inside). Returns the decoded
 * length, or -1 (LB_ERR_COBS) if a code byte points past the end. */
long lb_cobs_decode(uint8_t *chunk, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* LICHEN_BRIDGE_H */
