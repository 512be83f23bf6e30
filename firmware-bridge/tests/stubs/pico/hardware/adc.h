/* Stand-in for the Pico SDK's hardware/adc.h: declarations only. */
#ifndef STUB_HARDWARE_ADC_H
#define STUB_HARDWARE_ADC_H
#include <stdbool.h>
#include <stdint.h>
typedef unsigned int uint;
void adc_init(void);
void adc_set_temp_sensor_enabled(bool enable);
void adc_select_input(uint input);
uint16_t adc_read(void);
#endif
