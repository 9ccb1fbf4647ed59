/* fuzz_id: the id string (LOOM_COMM_ID, loom_id_from_string), which arrives from the
 * environment. Whatever the bytes: no crash, no read past them, no name lookup (ids
 * hold numeric addresses only), and an accepted string round-trips exactly. */
#include <stdlib.h>
#include <string.h>

#include "loom.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char s[256], back[LOOM_ID_STRLEN];
    if (size >= sizeof s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    loom_id_t id, again;
    if (loom_id_from_string(s, &id) != LOOM_SUCCESS) return 0;
    if (loom_id_to_string(&id, back, sizeof back) != LOOM_SUCCESS) abort();
    if (loom_id_from_string(back, &again) != LOOM_SUCCESS || memcmp(&id, &again, sizeof id) != 0) abort();
    return 0;
}
