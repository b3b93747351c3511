/* extract.h: internal entry points of the extraction pipeline, used by the CLI's run/search. */
#ifndef IMGSIM_EXTRACT_H
#define IMGSIM_EXTRACT_H

#include "api/api.h"
#include "data/dataset.h"

/* Extracts an already-listed dataset into store_dir (see imgsim_extract). list_seconds is the time
 * the listing took, recorded in the stats and meta.json. */
imgsim_status ims_extract_dataset(imgsim_engine *eng, const ims_dataset *ds, const char *input_desc,
                                 const char *store_dir, const imgsim_extract_opts *opt, double list_seconds,
                                 imgsim_extract_stats *stats, ims_err *e);

#endif
