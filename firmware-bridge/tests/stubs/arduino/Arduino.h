/* Stand-in for the Arduino core: declarations only (see ../README.md). */
#ifndef STUB_ARDUINO_H
#define STUB_ARDUINO_H
#include <stddef.h>
#include <stdint.h>

#define HIGH 0x1
#define LOW 0x0
#define INPUT 0x0
#define OUTPUT 0x1
#define INPUT_PULLUP 0x2
static const uint8_t A0 = 14, A1 = 15;

void pinMode(uint8_t pin, uint8_t mode);
int digitalRead(uint8_t pin);
int analogRead(uint8_t pin);
unsigned long millis(void);

class HardwareSerial {
  public:
    void begin(unsigned long baud);
    int available(void);
    int read(void);
    size_t write(uint8_t byte);
    size_t write(const uint8_t *buffer, size_t size);
    operator bool();
};
extern HardwareSerial Serial;

void setup(void);
void loop(void);
#endif
