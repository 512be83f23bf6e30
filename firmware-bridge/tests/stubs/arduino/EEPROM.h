/* Stand-in for the Arduino EEPROM library: declarations only. */
#ifndef STUB_EEPROM_H
#define STUB_EEPROM_H
struct EEPROMClass {
    template <typename T> T &get(int idx, T &t);
    template <typename T> const T &put(int idx, const T &t);
};
extern EEPROMClass EEPROM;
#endif
