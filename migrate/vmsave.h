/* Every piece of VM state other than RAM, as migration sections, in a fixed order:
 * devices (PCI config, MSI-X, NVMe, UART, i8042, RTC), then the VM (irqchip, PIT, clock),
 * then each vCPU. The VM must be paused and the NVMe function quiesced. */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct vm;
struct mig_stream;

int vmsave_write_all(struct vm *vm, struct mig_stream *s, char *err, size_t errlen);
/* Loads one non-RAM section into the (not yet running) destination VM. */
int vmsave_load_section(struct vm *vm, uint32_t id, uint16_t version, const uint8_t *payload,
                        size_t len, char *err, size_t errlen);
