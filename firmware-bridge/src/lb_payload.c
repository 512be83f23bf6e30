/*
 * lb_payload.c — the payloads of DESCRIBE, READINGS and REQUEST frames.
 *
 * DESCRIBE  count u8 . id u8 . kind u8 . exponent i8 .
 *           name_len u8 . name . unit_len u8 . unit . class_len u8 . class
 * READINGS  repeated: status<<6 | channel (u8) . zigzag LEB128 varint (int64)
 * REQUEST   what u8 (1 = describe every channel)
 *
 * Encoders and parsers apply the same rules, so a frame this library
 * builds is one it (and the agent) accepts, and nothing else is.
 */
#include "lichen_bridge.h"
#include "lb_internal.h"

#define LB_PAYLOAD_AT (2 + LB_HEADER_SIZE) /* where lb__finish wants it in out */

/* ---- texts --------------------------------------------------------------- */

static int lb_is_lower(uint8_t c) { return c >= 'a' && c <= 'z'; }
static int lb_is_word(uint8_t c) { return lb_is_lower(c) || (c >= '0' && c <= '9') || c == '_'; }

/* Length of a NUL-terminated string, or limit + 1 if it is longer. */
static size_t lb_bounded_len(const char *s, size_t limit)
{
    size_t n = 0;
    while (n <= limit && s[n] != '\0')
        n++;
    return n;
}

static int lb_valid_name(const uint8_t *s, size_t n)
{
    size_t i;
    if (n < 1 || n > LB_MAX_NAME || !lb_is_lower(s[0]))
        return 0;
    for (i = 1; i < n; i++)
        if (!lb_is_word(s[i]))
            return 0;
    return 1;
}

static int lb_valid_class(const uint8_t *s, size_t n)
{
    size_t i;
    if (n > LB_MAX_CLASS)
        return 0;
    for (i = 0; i < n; i++)
        if (!lb_is_word(s[i]))
            return 0;
    return 1;
}

/* Printable, well-formed UTF-8 (no overlong forms, surrogates or code
 * points past U+10FFFF), as the agent's strict decoder requires. */
static int lb_valid_unit(const uint8_t *s, size_t n)
{
    size_t i = 0, k, need;
    if (n > LB_MAX_UNIT)
        return 0;
    while (i < n) {
        uint8_t b = s[i], lo = 0x80, hi = 0xBF;
        if (b < 0x80) {
            if (b < 0x20 || b == 0x7F)
                return 0;
            i++;
            continue;
        }
        if (b < 0xC2 || b > 0xF4)
            return 0;
        need = b < 0xE0 ? 1 : b < 0xF0 ? 2 : 3;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
        if (i + need >= n)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        i += need + 1;
    }
    return 1;
}

/* ---- varints -------------------------------------------------------------- */

static size_t lb_put_varint(uint8_t *p, int64_t value)
{
    uint64_t z = value < 0 ? ~((uint64_t)value << 1) : (uint64_t)value << 1;
    size_t n = 0;
    while (z > 0x7FU) {
        p[n++] = (uint8_t)((z & 0x7FU) | 0x80U);
        z >>= 7;
    }
    p[n++] = (uint8_t)z;
    return n;
}

static int lb_get_varint(const uint8_t *p, size_t len, size_t *pos, int64_t *value)
{
    uint64_t z = 0;
    unsigned i;
    for (i = 0; i < 10 && *pos < len; i++) {
        uint8_t b = p[(*pos)++];
        z |= (uint64_t)(b & 0x7FU) << (7 * i);
        if (!(b & 0x80U)) {
            if ((b == 0 && i > 0) || (i == 9 && b > 1))
                return LB_ERR_PAYLOAD; /* overlong, or beyond 64 bits */
            *value = (z & 1U) ? -(int64_t)(z >> 1) - 1 : (int64_t)(z >> 1);
            return LB_FRAME;
        }
    }
    return LB_ERR_PAYLOAD; /* unterminated */
}

/* ---- DESCRIBE ----------------------------------------------------------- */

size_t lb_encode_describe(lb_encoder *enc, const lb_channel *channels, uint8_t count,
                          uint8_t id, uint8_t *out, size_t cap)
{
    const lb_channel *ch;
    const char *texts[3];
    size_t limits[3] = {LB_MAX_NAME, LB_MAX_UNIT, LB_MAX_CLASS}, lens[3], len = 4, t, i;
    uint8_t *p = out + LB_PAYLOAD_AT;
    if (channels == 0 || count < 1 || count > LB_MAX_CHANNELS || id >= count)
        return 0;
    ch = &channels[id];
    texts[0] = ch->name;
    texts[1] = ch->unit ? ch->unit : "";
    texts[2] = ch->device_class ? ch->device_class : "";
    if (texts[0] == 0 || ch->kind > LB_BOOLEAN || ch->exponent < LB_MIN_EXPONENT ||
        ch->exponent > LB_MAX_EXPONENT || (ch->kind == LB_BOOLEAN && ch->exponent != 0))
        return 0;
    for (t = 0; t < 3; t++) {
        lens[t] = lb_bounded_len(texts[t], limits[t]);
        len += 1 + lens[t];
    }
    if (!lb_valid_name((const uint8_t *)texts[0], lens[0]) ||
        !lb_valid_unit((const uint8_t *)texts[1], lens[1]) ||
        !lb_valid_class((const uint8_t *)texts[2], lens[2]) ||
        cap < LB_PAYLOAD_AT + len + LB_CRC_SIZE + 1)
        return 0;
    p[0] = count;
    p[1] = id;
    p[2] = ch->kind;
    p[3] = (uint8_t)ch->exponent;
    p += 4;
    for (t = 0; t < 3; t++) {
        *p++ = (uint8_t)lens[t];
        for (i = 0; i < lens[t]; i++)
            *p++ = (uint8_t)texts[t][i];
    }
    return lb__finish(enc, LB_DESCRIBE, out, cap, len);
}

int lb_parse_describe(const lb_frame *frame, lb_description *out)
{
    const uint8_t *p = frame->payload;
    size_t len = frame->payload_len, pos = 4, t;
    const uint8_t *texts[3];
    uint8_t lens[3], limits[3] = {LB_MAX_NAME, LB_MAX_UNIT, LB_MAX_CLASS};
    if (frame->type != LB_DESCRIBE || len < 7)
        return LB_ERR_PAYLOAD;
    for (t = 0; t < 3; t++) {
        if (pos >= len)
            return LB_ERR_PAYLOAD;
        lens[t] = p[pos];
        texts[t] = p + pos + 1;
        if (lens[t] > limits[t] || lens[t] > len - pos - 1)
            return LB_ERR_PAYLOAD;
        pos += 1U + lens[t];
    }
    if (pos != len || p[0] < 1 || p[0] > LB_MAX_CHANNELS || p[1] >= p[0] || p[2] > LB_BOOLEAN)
        return LB_ERR_PAYLOAD;
    out->count = p[0];
    out->id = p[1];
    out->kind = p[2];
    out->exponent = (int8_t)(p[3] > 127 ? (int)p[3] - 256 : (int)p[3]);
    if (out->exponent < LB_MIN_EXPONENT || out->exponent > LB_MAX_EXPONENT ||
        (out->kind == LB_BOOLEAN && out->exponent != 0) || !lb_valid_name(texts[0], lens[0]) ||
        !lb_valid_unit(texts[1], lens[1]) || !lb_valid_class(texts[2], lens[2]))
        return LB_ERR_PAYLOAD;
    out->name = (const char *)texts[0];
    out->unit = (const char *)texts[1];
    out->device_class = (const char *)texts[2];
    out->name_len = lens[0];
    out->unit_len = lens[1];
    out->class_len = lens[2];
    return LB_FRAME;
}

/* ---- READINGS ------------------------------------------------------------ */

size_t lb_encode_readings(lb_encoder *enc, const lb_reading *readings, uint8_t count,
                          uint8_t *out, size_t cap)
{
    uint32_t seen[2] = {0, 0};
    uint8_t item[11];
    size_t len = 0, n, i, k;
    if (readings == 0 || count < 1 || count > LB_MAX_CHANNELS)
        return 0;
    for (i = 0; i < count; i++) {
        const lb_reading *r = &readings[i];
        uint32_t bit;
        if (r->channel >= LB_MAX_CHANNELS || r->status > LB_FAULT)
            return 0;
        bit = (uint32_t)1 << (r->channel & 31U);
        if (seen[r->channel >> 5] & bit)
            return 0;
        seen[r->channel >> 5] |= bit;
        item[0] = (uint8_t)(r->status << 6 | r->channel);
        n = 1 + lb_put_varint(item + 1, r->value);
        if (len + n > LB_MAX_PAYLOAD || cap < LB_PAYLOAD_AT + len + n + LB_CRC_SIZE + 1)
            return 0;
        for (k = 0; k < n; k++)
            out[LB_PAYLOAD_AT + len + k] = item[k];
        len += n;
    }
    return lb__finish(enc, LB_READINGS, out, cap, len);
}

void lb_readings_begin(lb_readings_iter *it, const lb_frame *frame)
{
    it->frame = frame;
    it->offset = 0;
    it->seen[0] = it->seen[1] = 0;
}

int lb_readings_next(lb_readings_iter *it, lb_reading *out)
{
    const lb_frame *f = it->frame;
    uint8_t head;
    uint32_t bit;
    if (f->type != LB_READINGS || f->payload_len == 0)
        return LB_ERR_PAYLOAD;
    if (it->offset >= f->payload_len)
        return 0;
    head = f->payload[it->offset++];
    out->channel = head & 0x3FU;
    out->status = (uint8_t)(head >> 6);
    bit = (uint32_t)1 << (out->channel & 31U);
    if (out->status > LB_FAULT || (it->seen[out->channel >> 5] & bit))
        return LB_ERR_PAYLOAD;
    it->seen[out->channel >> 5] |= bit;
    return lb_get_varint(f->payload, f->payload_len, &it->offset, &out->value);
}

/* ---- REQUEST ------------------------------------------------------------- */

size_t lb_encode_request(lb_encoder *enc, uint8_t what, uint8_t *out, size_t cap)
{
    return lb_encode_frame(enc, LB_REQUEST, &what, 1, out, cap);
}

int lb_parse_request(const lb_frame *frame, uint8_t *what)
{
    if (frame->type != LB_REQUEST || frame->payload_len != 1)
        return LB_ERR_PAYLOAD;
    *what = frame->payload[0];
    return LB_FRAME;
}
