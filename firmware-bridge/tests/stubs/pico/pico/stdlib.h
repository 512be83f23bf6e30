/* Stand-in for the Pico SDK's pico/stdlib.h: declarations only. */
#ifndef STUB_PICO_STDLIB_H
#define STUB_PICO_STDLIB_H
#include <stdbool.h>
#include <stdint.h>
typedef unsigned int uint;
typedef uint64_t absolute_time_t;
#define PICO_ERROR_TIMEOUT (-1)
#define GPIO_IN 0
#define GPIO_OUT 1
bool stdio_init_all(void);
void stdio_flush(void);
int getchar_timeout_us(uint32_t timeout_us);
int putchar_raw(int c);
void sleep_ms(uint32_t ms);
absolute_time_t get_absolute_time(void);
uint32_t to_ms_since_boot(absolute_time_t t);
void gpio_init(uint gpio);
void gpio_set_dir(uint gpio, bool out);
void gpio_pull_up(uint gpio);
bool gpio_get(uint gpio);
#endif
