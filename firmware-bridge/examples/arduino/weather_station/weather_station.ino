// weather_station.ino — a Lichen serial bridge device on any Arduino.
//
// Wiring (an Uno, a Nano, a Leonardo …):
//   A0  TMP36 temperature sensor (Vout); its other legs to 5 V and GND
//   A1  light-dependent resistor to 5 V, 10 kΩ from A1 to GND
//   D2  reed switch (door) to GND; the internal pull-up holds it high
//   USB to the Raspberry Pi: it appears there as /dev/ttyACM0 or /dev/ttyUSB0
//
// On the Pi, in lichen.toml:
//   [[sensors.serial]]
//   name = "weather"
//   port = "/dev/ttyACM0"
//
// Install firmware-bridge as a library first (Sketch → Include Library →
// Add .ZIP Library, or symlink firmware-bridge into ~/Arduino/libraries/).

#include <EEPROM.h>
#include <lichen_bridge.h>

static const uint8_t DOOR_PIN = 2;
static const unsigned long SAMPLE_MS = 1000;
static const uint16_t DESCRIBE_EVERY = 60;  // frames; and at boot, and on request

static const lb_channel channels[] = {
    // name          unit            device class     exponent  kind
    {"temperature", "\xc2\xb0" "C", "temperature", -1, LB_NUMBER},  // 0.1 °C
    {"light", "%", "illuminance", -1, LB_NUMBER},                   // 0.1 %
    {"open", "", "door", 0, LB_BOOLEAN},
};
static const uint8_t CHANNELS = sizeof channels / sizeof channels[0];

static lb_encoder encoder;
static lb_decoder decoder;
static uint8_t frame[LB_MAX_FRAME];
static uint8_t rx[16];  // only REQUEST frames come this way: they are small
static uint16_t since_describe;
static unsigned long last_sample;

// A new boot id on every boot: a counter in EEPROM (one write per boot).
static uint16_t next_boot_id() {
  uint16_t boot = 0;
  EEPROM.get(0, boot);
  boot++;
  EEPROM.put(0, boot);
  return boot;
}

static void send(size_t length) {
  if (length > 0) Serial.write(frame, length);
}

static void describe() {
  for (uint8_t id = 0; id < CHANNELS; id++)
    send(lb_encode_describe(&encoder, channels, CHANNELS, id, frame, sizeof frame));
  since_describe = 0;
}

// An ADC at either end of its range has saturated: the value is a bound.
static uint8_t adc_status(int raw) {
  return (raw <= 0 || raw >= 1023) ? LB_CLIPPED : LB_OK;
}

static void sample() {
  int t = analogRead(A0), l = analogRead(A1);
  long millivolts = t * 5000L / 1024;
  lb_reading readings[3] = {
      {0, adc_status(t), millivolts - 500},  // TMP36: 10 mV/°C, 500 mV at 0 °C
      {1, adc_status(l), l * 1000L / 1023},
      {2, LB_OK, digitalRead(DOOR_PIN) == HIGH},  // open: the switch is apart
  };
  send(lb_encode_readings(&encoder, readings, 3, frame, sizeof frame));
  if (++since_describe >= DESCRIBE_EVERY) describe();
}

void setup() {
  pinMode(DOOR_PIN, INPUT_PULLUP);
  Serial.begin(115200);
  lb_encoder_init(&encoder, next_boot_id());
  lb_decoder_init(&decoder, rx, sizeof rx);
  describe();
}

void loop() {
  lb_frame request;
  uint8_t what;
  while (Serial.available() > 0) {
    int byte = Serial.read();
    if (byte >= 0 && lb_decoder_feed(&decoder, (uint8_t)byte, &request) == LB_FRAME &&
        lb_parse_request(&request, &what) == LB_FRAME && what == LB_REQUEST_DESCRIBE)
      describe();
  }
  unsigned long now = millis();
  if (now - last_sample >= SAMPLE_MS) {
    last_sample = now;
    sample();
  }
}
