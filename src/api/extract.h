/* extract.h: internal entry points of the extraction pipeline, used by the CLI's run/search. */
#ifndef IMGSIM_EXTRACT_H
#define IMGSIM_EXTRACT_H

#include "api/api.h"
#include "data/dataset.h"
#include "data/meta.h"

/* Extracts an already-listed dataset into store_dir (see imgsim_extract). list_seconds is the time
 * the listing took, recorded in the stats and meta.json. */
imgsim_status ims_extract_dataset(imgsim_engine *eng, const ims_dataset *ds, const char *input_desc,
                                 const char *store_dir, const imgsim_extract_opts *opt, double list_seconds,
                                 imgsim_extract_stats *stats, ims_err *e);

/* opt->update: brings the complete store in store_dir up to date with ds (api/update.c), or
 * extracts everything where it cannot, with a warning saying why. */
imgsim_status ims_extract_update(imgsim_engine *eng, const ims_dataset *ds, const char *input_desc,
                                 const char *store_dir, const imgsim_extract_opts *opt, double list_seconds,
                                 imgsim_extract_stats *stats, ims_err *e);

/* Writes meta.json at path for a store extracted with eng and opt (batch_size images a batch;
 * cpu_share: the final CPU share of GPU-decodable JPEGs, -1 when not decoding on the GPU). */
imgsim_status ims_extract_write_meta(const char *path, const imgsim_engine *eng, const imgsim_extract_opts *opt,
                                    int batch_size, double cpu_share, const char *input, const char *fingerprint,
                                    const imgsim_extract_stats *s, const ims_store_files *files, ims_err *e);

#endif
