/*
 * test_units.c — the library's rules one by one: CRC check value, COBS
 * round trips (in place too), what the encoders refuse, counter wrap-around,
 * the stream decoder on partial frames, noise, reboots mid-frame, small
 * buffers, and a million random bytes (with the sanitizers watching).
 */
#include <string.h>

#include "check.h"
#include "lichen_bridge.h"

static uint32_t rng_state = 0x2545F491UL;

static uint32_t rng(void) /* xorshift32: deterministic, good enough for inputs */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static const lb_channel climate[] = {
    {"temperature", "\xc2\xb0" "C", "temperature", -2, LB_NUMBER},
    {"humidity", "%", "humidity", -1, LB_NUMBER},
    {"open", "", "door", 0, LB_BOOLEAN},
};

static void test_crc32(void)
{
    static const uint8_t check[] = "123456789";
    check_context = "crc32";
    CHECK_EQ_INT(lb_crc32(0, check, 9), 0xCBF43926UL);
    CHECK_EQ_INT(lb_crc32(lb_crc32(0, check, 4), check + 4, 5), 0xCBF43926UL);
    CHECK_EQ_INT(lb_crc32(0, check, 0), 0);
}

static void test_cobs_round_trips(void)
{
    uint8_t data[253], encoded[256], inplace[256];
    unsigned trial;
    check_context = "cobs round trip";
    for (trial = 0; trial < 4000; trial++) {
        size_t len = rng() % 254, i, n;
        uint32_t zeros = rng() % 4; /* none, few, many, all zeros */
        long back;
        for (i = 0; i < len; i++) {
            uint8_t b = (uint8_t)rng();
            data[i] = zeros == 0 ? (uint8_t)(b | 1U) : zeros == 3 ? 0 : (rng() % (zeros * 8) == 0 ? 0 : b);
        }
        n = lb_cobs_encode(data, len, encoded);
        CHECK_EQ_INT(n, len + 1);
        CHECK(memchr(encoded, 0, n) == NULL);
        memcpy(inplace + 1, data, len); /* in place: the body one byte after dst */
        CHECK_EQ_INT(lb_cobs_encode(inplace + 1, len, inplace), n);
        CHECK(memcmp(inplace, encoded, n) == 0);
        back = lb_cobs_decode(encoded, n);
        CHECK_EQ_INT(back, (long)len);
        CHECK(memcmp(encoded, data, len) == 0);
    }
}

static void test_cobs_decode_refuses(void)
{
    uint8_t past_end[] = {0x05, 0x12, 0x34};
    uint8_t zero_inside[] = {0x03, 0x00, 0x01};
    uint8_t ff_block[255];
    check_context = "cobs decode";
    CHECK_EQ_INT(lb_cobs_decode(past_end, sizeof past_end), LB_ERR_COBS);
    CHECK_EQ_INT(lb_cobs_decode(zero_inside, sizeof zero_inside), LB_ERR_COBS);
    memset(ff_block, 0x77, sizeof ff_block); /* a 0xFF code: 254 bytes, no zero after */
    ff_block[0] = 0xFF;
    CHECK_EQ_INT(lb_cobs_decode(ff_block, sizeof ff_block), 254);
}

static void test_encoder_refuses(void)
{
    uint8_t out[LB_MAX_FRAME];
    lb_encoder enc;
    lb_channel bad;
    lb_reading r[2] = {{0, LB_OK, 1}, {1, LB_OK, 2}};
    uint8_t payload[LB_MAX_PAYLOAD + 1];
    const char *names[] = {"Temperature", "", "9lives", "a-b",
                           "abcdefghijklmnopqrstuvwxyz0123456"}; /* 33 chars */
    size_t i;
    check_context = "encoder refuses";
    lb_encoder_init(&enc, 7);
    CHECK_EQ_INT(lb_encode_describe(&enc, climate, 0, 0, out, sizeof out), 0);
    CHECK_EQ_INT(lb_encode_describe(&enc, climate, 3, 3, out, sizeof out), 0);
    CHECK_EQ_INT(lb_encode_describe(&enc, climate, 65, 0, out, sizeof out), 0);
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        bad = climate[0];
        bad.name = names[i];
        CHECK_EQ_INT(lb_encode_describe(&enc, &bad, 1, 0, out, sizeof out), 0);
    }
    bad = climate[0];
    bad.unit = "a\tb";
    CHECK_EQ_INT(lb_encode_describe(&enc, &bad, 1, 0, out, sizeof out), 0);
    bad.unit = "\xc0\xb0";
    CHECK_EQ_INT(lb_encode_describe(&enc, &bad, 1, 0, out, sizeof out), 0);
    bad.unit = "%";
    bad.device_class = "door-switch";
    CHECK_EQ_INT(lb_encode_describe(&enc, &bad, 1, 0, out, sizeof out), 0);
    bad = climate[0];
    bad.exponent = 13;
    CHECK_EQ_INT(lb_encode_describe(&enc, &bad, 1, 0, out, sizeof out), 0);
    bad = climate[2];
    bad.exponent = -1; /* booleans are not scaled */
    CHECK_EQ_INT(lb_encode_describe(&enc, &bad, 1, 0, out, sizeof out), 0);
    bad.kind = 2;
    CHECK_EQ_INT(lb_encode_describe(&enc, &bad, 1, 0, out, sizeof out), 0);
    CHECK_EQ_INT(lb_encode_describe(&enc, climate, 3, 0, out, 20), 0); /* too small */

    CHECK_EQ_INT(lb_encode_readings(&enc, r, 0, out, sizeof out), 0);
    r[1].channel = 0; /* twice */
    CHECK_EQ_INT(lb_encode_readings(&enc, r, 2, out, sizeof out), 0);
    r[1].channel = 64;
    CHECK_EQ_INT(lb_encode_readings(&enc, r, 2, out, sizeof out), 0);
    r[1].channel = 1;
    r[1].status = 3;
    CHECK_EQ_INT(lb_encode_readings(&enc, r, 2, out, sizeof out), 0);
    r[1].status = LB_OK;
    CHECK_EQ_INT(lb_encode_readings(&enc, r, 2, out, 15), 0);
    memset(payload, 1, sizeof payload);
    CHECK_EQ_INT(lb_encode_frame(&enc, 16, payload, 1, out, sizeof out), 0);
    CHECK_EQ_INT(lb_encode_frame(&enc, 7, payload, LB_MAX_PAYLOAD + 1, out, sizeof out), 0);
    CHECK_EQ_INT(enc.counter, 0); /* nothing was sent */
    CHECK_EQ_INT(lb_encode_frame(&enc, 7, payload, LB_MAX_PAYLOAD, out, sizeof out),
                 LB_MAX_FRAME);
    CHECK_EQ_INT(lb_encode_readings(&enc, r, 2, out, sizeof out), 16);
    CHECK_EQ_INT(enc.counter, 2);
}

static void test_counter_wraps(void)
{
    uint8_t out[LB_MAX_FRAME], buf[LB_MAX_CHUNK];
    lb_encoder enc;
    lb_decoder dec;
    lb_frame f;
    lb_reading r = {0, LB_OK, 5};
    size_t n, i;
    int result = LB_NEED_MORE;
    check_context = "counter wrap";
    lb_encoder_init(&enc, 0xBEEF);
    enc.counter = 0xFFFF;
    n = lb_encode_readings(&enc, &r, 1, out, sizeof out);
    CHECK_EQ_INT(enc.counter, 0);
    lb_decoder_init(&dec, buf, sizeof buf);
    for (i = 0; i < n; i++)
        result = lb_decoder_feed(&dec, out[i], &f);
    CHECK_EQ_INT(result, LB_FRAME);
    CHECK_EQ_INT(f.counter, 0xFFFF);
    CHECK_EQ_INT(f.boot_id, 0xBEEF);
}

/* Frames split anywhere, noise between them, a reboot mid-frame: every
 * complete frame decodes, every broken chunk is refused, nothing else. */
static void test_stream(void)
{
    uint8_t out[4 * LB_MAX_FRAME], buf[LB_MAX_CHUNK];
    static const uint8_t noise[] = {0x55, 0xAA, 0x13, 0x37};
    lb_encoder enc;
    lb_decoder dec;
    lb_frame f;
    lb_reading r = {1, LB_CLIPPED, -4000};
    size_t a, b, i;
    int frames = 0, errors = 0, result;
    check_context = "stream";
    lb_encoder_init(&enc, 1);
    a = lb_encode_describe(&enc, climate, 3, 0, out, sizeof out);
    lb_encoder_init(&enc, 2); /* rebooted: a new boot id */
    b = lb_encode_readings(&enc, &r, 1, out + a / 2, sizeof out - a / 2);
    memcpy(out + a / 2 + b, noise, sizeof noise);
    lb_decoder_init(&dec, buf, sizeof buf);
    for (i = 0; i < a / 2 + b + sizeof noise; i++) {
        result = lb_decoder_feed(&dec, out[i], &f);
        if (result == LB_FRAME) {
            frames++;
            CHECK_EQ_INT(f.boot_id, 2);
        } else if (result != LB_NEED_MORE) {
            errors++;
        }
    }
    CHECK_EQ_INT(frames, 1); /* the readings after the reboot */
    CHECK_EQ_INT(errors, 1); /* half a DESCRIBE; the trailing noise still waits */
    CHECK_EQ_INT(lb_decoder_feed(&dec, 0, &f), LB_ERR_COBS);
}

static void test_small_buffer(void)
{
    uint8_t out[LB_MAX_FRAME], buf[12];
    lb_encoder enc;
    lb_decoder dec;
    lb_frame f;
    lb_reading r = {0, LB_OK, 1};
    uint8_t what = 0;
    size_t n, i;
    int result = LB_NEED_MORE;
    check_context = "small buffer";
    lb_encoder_init(&enc, 3);
    lb_decoder_init(&dec, buf, sizeof buf); /* a device that only hears REQUESTs */
    n = lb_encode_describe(&enc, climate, 3, 0, out, sizeof out);
    for (i = 0; i < n; i++)
        result = lb_decoder_feed(&dec, out[i], &f);
    CHECK_EQ_INT(result, LB_ERR_OVERSIZE);
    n = lb_encode_request(&enc, LB_REQUEST_DESCRIBE, out, sizeof out);
    for (i = 0; i < n; i++)
        result = lb_decoder_feed(&dec, out[i], &f);
    CHECK_EQ_INT(result, LB_FRAME);
    CHECK_EQ_INT(lb_parse_request(&f, &what), LB_FRAME);
    CHECK_EQ_INT(what, LB_REQUEST_DESCRIBE);
    CHECK_EQ_INT(lb_parse_describe(&f, &(lb_description){0}), LB_ERR_PAYLOAD);
    n = lb_encode_readings(&enc, &r, 1, out, sizeof out);
    lb_decoder_feed(&dec, 0x42, &f); /* a partial chunk, then the line resets */
    lb_decoder_reset(&dec);
    for (i = 1; i < n; i++)
        result = lb_decoder_feed(&dec, out[i], &f);
    CHECK_EQ_INT(result, LB_FRAME);
}

static void test_random_round_trips(void)
{
    uint8_t out[LB_MAX_FRAME], buf[LB_MAX_CHUNK];
    lb_encoder enc;
    lb_decoder dec;
    lb_frame f;
    lb_readings_iter it;
    lb_reading in[LB_MAX_CHANNELS], back;
    unsigned trial;
    check_context = "random readings";
    lb_encoder_init(&enc, 9);
    lb_decoder_init(&dec, buf, sizeof buf);
    for (trial = 0; trial < 2000; trial++) {
        uint8_t count = (uint8_t)(1 + rng() % 22), k, j;
        size_t n, i;
        int result = LB_NEED_MORE;
        for (k = 0; k < count; k++) {
            uint64_t bits = (uint64_t)rng() << 32 | rng();
            in[k].channel = (uint8_t)(k * 2 + (rng() & 1U));
            in[k].status = (uint8_t)(rng() % 3);
            in[k].value = (int64_t)(bits >> (1 + rng() % 63)) * ((rng() & 1U) ? -1 : 1);
        }
        n = lb_encode_readings(&enc, in, count, out, sizeof out);
        CHECK(n > 0);
        for (i = 0; i < n; i++)
            result = lb_decoder_feed(&dec, out[i], &f);
        CHECK_EQ_INT(result, LB_FRAME);
        lb_readings_begin(&it, &f);
        for (j = 0; j < count; j++) {
            CHECK_EQ_INT(lb_readings_next(&it, &back), LB_FRAME);
            CHECK(back.channel == in[j].channel && back.status == in[j].status &&
                  back.value == in[j].value);
        }
        CHECK_EQ_INT(lb_readings_next(&it, &back), 0);
    }
}

static void test_random_bytes(void)
{
    uint8_t buf[LB_MAX_CHUNK];
    lb_decoder dec;
    lb_frame f;
    long i;
    int frames = 0, result;
    check_context = "random bytes";
    lb_decoder_init(&dec, buf, sizeof buf);
    for (i = 0; i < 1000000L; i++) {
        uint32_t x = rng();
        result = lb_decoder_feed(&dec, (x & 0x300U) ? (uint8_t)x : 0, &f);
        CHECK(result >= LB_ERR_PAYLOAD && result <= LB_FRAME);
        if (result == LB_FRAME) /* only if the CRC truly matched */
            frames += lb_crc32(0, f.payload - LB_HEADER_SIZE, LB_HEADER_SIZE + f.payload_len) ==
                      ((uint32_t)f.payload[f.payload_len] |
                       (uint32_t)f.payload[f.payload_len + 1] << 8 |
                       (uint32_t)f.payload[f.payload_len + 2] << 16 |
                       (uint32_t)f.payload[f.payload_len + 3] << 24) ? 0 : 1;
    }
    CHECK_EQ_INT(frames, 0); /* no frame whose CRC did not match */
}

int main(void)
{
    test_crc32();
    test_cobs_round_trips();
    test_cobs_decode_refuses();
    test_encoder_refuses();
    test_counter_wraps();
    test_stream();
    test_small_buffer();
    test_random_round_trips();
    test_random_bytes();
    return check_report("test_units");
}
