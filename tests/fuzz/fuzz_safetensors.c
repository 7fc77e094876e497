/* libFuzzer target for the safetensors header parser: the input is split
 * into an 8-byte data-section length and the JSON header text. Any result
 * is fine except a crash, a leak or an accepted tensor outside the data. */
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    uint64_t data_len;
    memcpy(&data_len, data, 8);
    data_len %= 1u << 24;  /* keep plausible sizes so offsets can land inside */
    st_tensor_t *t = NULL;
    int n = 0;
    deft_err_t err;
    if (st_parse_header((const char *)data + 8, size - 8, (size_t)data_len, "fuzz", &t, &n,
                        &err) == DEFT_OK) {
        for (int i = 0; i < n; i++)
            if (t[i].nbytes > data_len || !t[i].name)
                abort();
    } else if (t || !err.msg[0]) {
        abort();
    }
    st_free_tensors(t, n);
    return 0;
}
