/*
 * test_vectors.c — the shared vectors (tests/vectors/bridge_frames.txt, the
 * twin of the JSON the Python tests read): the C encoder must produce every
 * valid frame byte for byte, the C decoder must read each back to its
 * fields, and refuse each invalid chunk for its stated reason.
 *
 * Usage: test_vectors PATH/TO/bridge_frames.txt
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lichen_bridge.h"

#define MAX_TEXT 64
#define MAX_WIRE 1024

typedef struct {
    int valid;
    char name[96], reason[32];
    int type;
    unsigned boot_id, counter;
    int has_describe, request, has_payload;
    unsigned count, id, kind;
    int exponent;
    char texts[3][MAX_TEXT];
    lb_reading readings[LB_MAX_CHANNELS];
    uint8_t nreadings;
    uint8_t payload[LB_MAX_PAYLOAD];
    size_t payload_len;
    uint8_t wire[MAX_WIRE];
    size_t wire_len;
} vector;

/* Every vector's wire, each after some line noise: the stream test feeds
 * it all to one decoder and expects exactly these results, in order. */
static uint8_t stream[64 * 1024];
static size_t stream_len;
static int stream_expected[512];
static size_t stream_results;

static size_t parse_hex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    unsigned byte;
    while (hex[0] && hex[1] && hex[0] != '\n' && n < cap && sscanf(hex, "%2x", &byte) == 1) {
        out[n++] = (uint8_t)byte;
        hex += 2;
    }
    return n;
}

static int expected_error(const char *reason)
{
    static const struct { const char *name; int code; } reasons[] = {
        {"cobs", LB_ERR_COBS},     {"short", LB_ERR_SHORT},     {"oversize", LB_ERR_OVERSIZE},
        {"crc", LB_ERR_CRC},       {"version", LB_ERR_VERSION}, {"payload", LB_ERR_PAYLOAD},
    };
    size_t i;
    for (i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (strcmp(reasons[i].name, reason) == 0)
            return reasons[i].code;
    return 0;
}

/* Feed wire one byte at a time; returns the one result that was not
 * LB_NEED_MORE (and *frame), or 99 if there were none or several. */
static int feed_all(const uint8_t *wire, size_t len, uint8_t *buf, lb_frame *frame)
{
    lb_decoder dec;
    size_t i;
    int result = 99, seen = 0;
    lb_decoder_init(&dec, buf, LB_MAX_CHUNK);
    for (i = 0; i < len; i++) {
        int r = lb_decoder_feed(&dec, wire[i], frame);
        if (r != LB_NEED_MORE) {
            result = r;
            seen++;
        }
    }
    return seen == 1 ? result : 99;
}

/* The payload check of a frame whose CRC matched: LB_FRAME or LB_ERR_PAYLOAD. */
static int payload_result(const lb_frame *f)
{
    lb_description d;
    lb_readings_iter it;
    lb_reading r;
    uint8_t what;
    int result;
    if (f->type == LB_DESCRIBE)
        return lb_parse_describe(f, &d);
    if (f->type == LB_REQUEST)
        return lb_parse_request(f, &what);
    if (f->type != LB_READINGS)
        return LB_FRAME;
    lb_readings_begin(&it, f);
    while ((result = lb_readings_next(&it, &r)) == LB_FRAME)
        ;
    return result == 0 ? LB_FRAME : result;
}

static int text_is(const char *got, uint8_t len, const char *want)
{
    return strlen(want) == len && memcmp(got, want, len) == 0;
}

static void check_encoding(const vector *v)
{
    uint8_t out[LB_MAX_FRAME];
    lb_encoder enc;
    lb_channel channels[LB_MAX_CHANNELS];
    size_t n = 0, i;
    enc.boot_id = (uint16_t)v->boot_id;
    enc.counter = (uint16_t)v->counter;
    if (v->has_describe) {
        for (i = 0; i < LB_MAX_CHANNELS; i++) {
            channels[i].name = v->texts[0];
            channels[i].unit = v->texts[1];
            channels[i].device_class = v->texts[2];
            channels[i].exponent = (int8_t)v->exponent;
            channels[i].kind = (uint8_t)v->kind;
        }
        n = lb_encode_describe(&enc, channels, (uint8_t)v->count, (uint8_t)v->id, out, sizeof out);
    } else if (v->nreadings) {
        n = lb_encode_readings(&enc, v->readings, v->nreadings, out, sizeof out);
    } else if (v->request >= 0) {
        n = lb_encode_request(&enc, (uint8_t)v->request, out, sizeof out);
    } else if (v->has_payload) {
        n = lb_encode_frame(&enc, (uint8_t)v->type, v->payload, v->payload_len, out, sizeof out);
    }
    CHECK_EQ_INT(n, v->wire_len);
    CHECK(n == v->wire_len && memcmp(out, v->wire, n) == 0);
    CHECK_EQ_INT(enc.counter, (v->counter + 1U) & 0xFFFFU);
}

static void check_decoding(const vector *v)
{
    uint8_t buf[LB_MAX_CHUNK];
    lb_frame f;
    lb_description d;
    lb_readings_iter it;
    lb_reading r;
    uint8_t what = 0, k = 0;
    int result = feed_all(v->wire, v->wire_len, buf, &f);
    CHECK_EQ_INT(result, LB_FRAME);
    if (result != LB_FRAME)
        return;
    CHECK_EQ_INT(f.type, v->type);
    CHECK_EQ_INT(f.boot_id, v->boot_id);
    CHECK_EQ_INT(f.counter, v->counter);
    if (v->has_describe) {
        CHECK_EQ_INT(lb_parse_describe(&f, &d), LB_FRAME);
        CHECK_EQ_INT(d.count, v->count);
        CHECK_EQ_INT(d.id, v->id);
        CHECK_EQ_INT(d.kind, v->kind);
        CHECK_EQ_INT(d.exponent, v->exponent);
        CHECK(text_is(d.name, d.name_len, v->texts[0]));
        CHECK(text_is(d.unit, d.unit_len, v->texts[1]));
        CHECK(text_is(d.device_class, d.class_len, v->texts[2]));
    }
    if (v->nreadings) {
        lb_readings_begin(&it, &f);
        while ((result = lb_readings_next(&it, &r)) == LB_FRAME && k < v->nreadings) {
            CHECK_EQ_INT(r.channel, v->readings[k].channel);
            CHECK_EQ_INT(r.status, v->readings[k].status);
            CHECK(r.value == v->readings[k].value);
            k++;
        }
        CHECK_EQ_INT(result, 0);
        CHECK_EQ_INT(k, v->nreadings);
    }
    if (v->request >= 0) {
        CHECK_EQ_INT(lb_parse_request(&f, &what), LB_FRAME);
        CHECK_EQ_INT(what, v->request);
    }
    if (v->has_payload)
        CHECK(f.payload_len == v->payload_len && memcmp(f.payload, v->payload, f.payload_len) == 0);
}

static void check_invalid(const vector *v)
{
    uint8_t buf[LB_MAX_CHUNK];
    lb_frame f;
    int want = expected_error(v->reason), result = feed_all(v->wire, v->wire_len, buf, &f);
    CHECK(want != 0);
    if (want == LB_ERR_PAYLOAD) { /* framing is fine; the payload is not */
        CHECK_EQ_INT(result, LB_FRAME);
        if (result == LB_FRAME)
            CHECK_EQ_INT(payload_result(&f), LB_ERR_PAYLOAD);
    } else {
        CHECK_EQ_INT(result, want);
    }
}

static void add_to_stream(const vector *v)
{
    static const uint8_t noise[] = {0x41, 0xFE, 0x13}; /* code 0x41: past the end */
    int want = v->valid ? LB_FRAME : expected_error(v->reason);
    if (stream_len + sizeof noise + v->wire_len > sizeof stream || stream_results + 2 > 512)
        return;
    memcpy(stream + stream_len, noise, sizeof noise);
    stream_len += sizeof noise;
    memcpy(stream + stream_len, v->wire, v->wire_len);
    stream_len += v->wire_len;
    stream_expected[stream_results++] = LB_ERR_COBS; /* cut off by the leading 00 */
    stream_expected[stream_results++] = want == LB_ERR_PAYLOAD ? LB_FRAME : want;
}

static void check_stream(void)
{
    uint8_t buf[LB_MAX_CHUNK];
    lb_decoder dec;
    lb_frame f;
    size_t i, k = 0;
    check_context = "stream of every vector";
    lb_decoder_init(&dec, buf, sizeof buf);
    for (i = 0; i < stream_len; i++) {
        int r = lb_decoder_feed(&dec, stream[i], &f);
        if (r == LB_NEED_MORE)
            continue;
        CHECK(k < stream_results);
        if (k < stream_results)
            CHECK_EQ_INT(r, stream_expected[k]);
        k++;
    }
    CHECK_EQ_INT(k, stream_results);
}

static char *word(char **cursor)
{
    char *start = *cursor, *end;
    while (*start == ' ')
        start++;
    end = start;
    while (*end && *end != ' ' && *end != '\n')
        end++;
    *cursor = *end ? end + 1 : end;
    *end = '\0';
    return start;
}

static void text_field(char *dst, const char *token)
{
    if (strcmp(token, "-") == 0)
        token = "";
    strncpy(dst, token, MAX_TEXT - 1);
    dst[MAX_TEXT - 1] = '\0';
}

static void finish(vector *v, unsigned *valid, unsigned *invalid)
{
    check_context = v->name;
    if (v->valid) {
        check_encoding(v);
        check_decoding(v);
        ++*valid;
    } else {
        check_invalid(v);
        ++*invalid;
    }
    add_to_stream(v);
}

int main(int argc, char **argv)
{
    static char line[4096];
    static vector v;
    unsigned valid = 0, invalid = 0;
    FILE *file;
    if (argc != 2 || (file = fopen(argv[1], "r")) == NULL) {
        fprintf(stderr, "usage: test_vectors PATH/bridge_frames.txt (cannot open it)\n");
        return 2;
    }
    while (fgets(line, sizeof line, file)) {
        char *cursor = line, *key = word(&cursor);
        if (strcmp(key, "valid") == 0 || strcmp(key, "invalid") == 0) {
            memset(&v, 0, sizeof v);
            v.valid = key[0] == 'v';
            v.request = -1;
            strncpy(v.name, word(&cursor), sizeof v.name - 1);
            strncpy(v.reason, word(&cursor), sizeof v.reason - 1);
        } else if (strcmp(key, "header") == 0) {
            v.type = atoi(word(&cursor));
            v.boot_id = (unsigned)strtoul(word(&cursor), NULL, 10);
            v.counter = (unsigned)strtoul(word(&cursor), NULL, 10);
        } else if (strcmp(key, "describe") == 0) {
            v.has_describe = 1;
            v.count = (unsigned)atoi(word(&cursor));
            v.id = (unsigned)atoi(word(&cursor));
            v.kind = (unsigned)atoi(word(&cursor));
            v.exponent = atoi(word(&cursor));
            text_field(v.texts[0], word(&cursor));
            text_field(v.texts[1], word(&cursor));
            text_field(v.texts[2], word(&cursor));
        } else if (strcmp(key, "reading") == 0 && v.nreadings < LB_MAX_CHANNELS) {
            lb_reading *r = &v.readings[v.nreadings++];
            r->channel = (uint8_t)atoi(word(&cursor));
            r->status = (uint8_t)atoi(word(&cursor));
            r->value = (int64_t)strtoll(word(&cursor), NULL, 10);
        } else if (strcmp(key, "request") == 0) {
            v.request = atoi(word(&cursor));
        } else if (strcmp(key, "payload") == 0) {
            v.has_payload = 1;
            v.payload_len = parse_hex(word(&cursor), v.payload, sizeof v.payload);
        } else if (strcmp(key, "wire") == 0) {
            v.wire_len = parse_hex(word(&cursor), v.wire, sizeof v.wire);
        } else if (strcmp(key, "end") == 0) {
            finish(&v, &valid, &invalid);
        }
    }
    fclose(file);
    check_context = argv[1];
    CHECK(valid >= 10 && invalid >= 20); /* the file was read, not silently empty */
    check_stream();
    printf("vectors: %u valid, %u invalid, stream of %lu bytes\n", valid, invalid,
           (unsigned long)stream_len);
    return check_report("test_vectors");
}
