/*
 * main.c — a Lichen serial bridge device on a Raspberry Pi Pico (RP2040).
 *
 * It reports the chip's own temperature sensor and a door switch, over the
 * Pico's USB serial port (it appears on the Raspberry Pi as /dev/ttyACM0).
 *
 * Wiring: a reed switch between GP15 and GND (the internal pull-up holds it
 * high); nothing else. Build (see README.md):
 *
 *     export PICO_SDK_PATH=~/pico-sdk
 *     cmake -S firmware-bridge/examples/pico -B build-pico && cmake --build build-pico
 *     # copy build-pico/lichen_pico.uf2 to the Pico in BOOTSEL mode
 */
#include <stdbool.h>
#include <stdint.h>

#include "hardware/adc.h"
#include "lichen_bridge.h"
#include "pico/rand.h"
#include "pico/stdlib.h"

#define DOOR_PIN 15
#define SAMPLE_MS 1000
#define DESCRIBE_EVERY 60 /* frames; and at boot, and on request */
#define TEMPERATURE_ADC 4 /* the RP2040's internal sensor */

static const lb_channel channels[] = {
    /* name          unit             device class   exponent kind */
    {"temperature", "\xc2\xb0" "C", "temperature", -2, LB_NUMBER}, /* 0.01 °C */
    {"open", "", "door", 0, LB_BOOLEAN},
};
#define CHANNELS ((uint8_t)(sizeof channels / sizeof channels[0]))

static lb_encoder encoder;
static uint8_t frame[LB_MAX_FRAME];
static unsigned since_describe;

/* putchar_raw: binary-safe (no CR/LF translation), unlike putchar. */
static void send(size_t length)
{
    for (size_t i = 0; i < length; i++)
        putchar_raw(frame[i]);
    stdio_flush();
}

static void describe(void)
{
    for (uint8_t id = 0; id < CHANNELS; id++)
        send(lb_encode_describe(&encoder, channels, CHANNELS, id, frame, sizeof frame));
    since_describe = 0;
}

static void sample(void)
{
    /* RP2040 datasheet 4.9.5: T = 27 - (V - 0.706) / 0.001721, V = raw * 3.3 / 4096 */
    uint16_t raw = adc_read();
    float volts = (float)raw * 3.3f / 4096.0f;
    float celsius = 27.0f - (volts - 0.706f) / 0.001721f;
    lb_reading readings[2] = {
        {0, (raw == 0 || raw >= 4095) ? LB_CLIPPED : LB_OK, (int64_t)(celsius * 100.0f)},
        {1, LB_OK, gpio_get(DOOR_PIN) ? 1 : 0}, /* open: the switch is apart */
    };
    send(lb_encode_readings(&encoder, readings, 2, frame, sizeof frame));
    if (++since_describe >= DESCRIBE_EVERY)
        describe();
}

int main(void)
{
    static uint8_t rx[16]; /* only REQUEST frames come this way */
    lb_decoder decoder;
    lb_frame request;
    uint8_t what;
    uint32_t last_sample = 0;

    stdio_init_all();
    adc_init();
    adc_set_temp_sensor_enabled(true);
    adc_select_input(TEMPERATURE_ADC);
    gpio_init(DOOR_PIN);
    gpio_set_dir(DOOR_PIN, GPIO_IN);
    gpio_pull_up(DOOR_PIN);

    lb_encoder_init(&encoder, (uint16_t)get_rand_32()); /* a new boot id per boot */
    lb_decoder_init(&decoder, rx, sizeof rx);
    describe();
    for (;;) {
        int c;
        while ((c = getchar_timeout_us(0)) != PICO_ERROR_TIMEOUT) {
            if (lb_decoder_feed(&decoder, (uint8_t)c, &request) == LB_FRAME &&
                lb_parse_request(&request, &what) == LB_FRAME && what == LB_REQUEST_DESCRIBE)
                describe();
        }
        uint32_t now = to_ms_since_boot(get_absolute_time());
        if (now - last_sample >= SAMPLE_MS) {
            last_sample = now;
            sample();
        }
        sleep_ms(5);
    }
}
