/*
 * json.h: JSON text that stays valid for strings that are not UTF-8 (file names are bytes): such
 * bytes are written as \udcXX, Python's surrogateescape convention (json.c says why), and read
 * back as the bytes.
 */
#ifndef IMGSIM_CORE_JSON_H
#define IMGSIM_CORE_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* cJSON_Print (pretty) or cJSON_PrintUnformatted of v, with every byte that is not part of a valid
 * UTF-8 sequence written as \udcXX. malloc'ed (free()), NULL when out of memory. */
char *ims_json_print(const cJSON *v, int pretty);
/* The same escaping of any text (a whole JSON document as cJSON prints it). malloc'ed. */
char *ims_json_escape_bytes(const char *txt);
/* Parses JSON text of len bytes, turning \udc80..\udcff escapes that are not the second half of a
 * surrogate pair back into the bytes 0x80..0xff first. NULL when the text is not JSON (or out of
 * memory); then *err_at (may be NULL) is the byte offset of the error, -1 if unknown. */
cJSON *ims_json_parse(const char *buf, size_t len, long *err_at);

#endif /* IMGSIM_CORE_JSON_H */
