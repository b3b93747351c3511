/* text.c: imgsim_json_escape_bytes, the JSON convention for names that are not UTF-8
 * (core/json.c), for callers that write JSON of their own beside imgsim's. */
#include "core/core.h"
#include "core/json.h"

char *imgsim_json_escape_bytes(const char *json) {
    return json ? ims_json_escape_bytes(json) : NULL;
}
