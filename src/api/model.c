/* model.c: the public model handle: ONNX import, output selection and optimisation, once. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

imgsim_status imgsim_model_load(imgsim_model **out, const char *path, const char *layer) {
    if (!out || !path) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_model_load: NULL argument");
    *out = NULL;
    imgsim_model *m = ims_calloc(1, sizeof *m);
    if (!m) return ims_fail(NULL, IMGSIM_ERR_NOMEM, "out of memory");
    m->path = ims_strdup(path);
    snprintf(m->layer_asked, sizeof m->layer_asked, "%s", layer ? layer : "");
    imgsim_status st;
    if (!m->path) {
        st = ims_fail(&m->err, IMGSIM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = ims_onnx_load(&m->g, path, &m->err))) goto fail;
    m->n_nodes_file = m->g->n_nodes; /* the file's own counts, before the passes */
    for (int i = 0; i < m->g->n_vals; i++)
        if (m->g->vals[i].data) m->n_params += ims_value_numel(&m->g->vals[i]);
    if ((st = ims_graph_infer_shapes(m->g, &m->err))) goto prefixed;
    if ((st = ims_graph_select_output(m->g, layer, &m->err))) goto prefixed;
    snprintf(m->layer, sizeof m->layer, "%s", m->g->vals[m->g->output].name);
    if ((st = ims_graph_optimize(m->g, &m->err))) goto prefixed;
    *out = m;
    return IMGSIM_OK;
prefixed:
    if (strncmp(m->err.msg, path, strlen(path)) != 0) ims_fail_prefix(&m->err, st, path);
fail:
    ims_fail_copy(NULL, &m->err, st);
    imgsim_model_destroy(m);
    return st;
}

void imgsim_model_destroy(imgsim_model *m) {
    if (!m) return;
    ims_graph_free(m->g);
    free(m->path);
    free(m);
}

const char *imgsim_model_errmsg(const imgsim_model *m) {
    return m ? m->err.msg : "no model";
}

imgsim_status imgsim_model_get_info(const imgsim_model *m, imgsim_model_info *info) {
    if (!m || !info) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_model_get_info: NULL argument");
    memset(info, 0, sizeof *info);
    const ims_graph *g = m->g;
    info->dim = (int)g->dim;
    info->in_channels = g->in_c;
    info->in_height = g->in_h;
    info->in_width = g->in_w;
    info->opset = g->opset;
    snprintf(info->layer, sizeof info->layer, "%s", m->layer);
    snprintf(info->sha256, sizeof info->sha256, "%s", g->sha256);
    int live = 0;
    for (int i = 0; i < g->n_nodes; i++) live += !g->nodes[i].dead;
    info->n_nodes = live;
    snprintf(info->embedding, sizeof info->embedding, "%s", g->embedding);
    info->quantized = g->qdq != 0;
    int count[IS_OP_COUNT] = {0};
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].dead && (unsigned)g->nodes[i].op < IS_OP_COUNT) count[g->nodes[i].op]++;
    size_t at = 0;
    for (;;) { /* most frequent first, ties in operator order */
        int best = -1;
        for (int k = 0; k < IS_OP_COUNT; k++)
            if (count[k] > 0 && (best < 0 || count[k] > count[best])) best = k;
        if (best < 0) break;
        int w = snprintf(info->operators + at, sizeof info->operators - at, "%s%s %d", at ? ", " : "",
                         ims_op_name((ims_op)best), count[best]);
        if (w < 0 || (size_t)w >= sizeof info->operators - at) break;
        at += (size_t)w;
        count[best] = 0;
    }
    info->n_nodes_file = m->n_nodes_file;
    info->n_params = m->n_params;
    return IMGSIM_OK;
}
