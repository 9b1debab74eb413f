/* _fastcount: the fused ingest kernel of evalstream (optional; see fastcount.py).
 *
 * One pass over a batch computes what counting.numpy_delta computes. Multiclass: the bin of every
 * score (the integer arithmetic of layout.BinLayout.bin_of), the flat histogram cells, the argmax
 * confusion, the true-class rank (sklearn's top-k tie rule), log loss, Brier, calibration and
 * probability sums. Binary and multilabel (labelwise): the cells, the per-label 2x2 counts at the
 * thresholds, calibration and probability sums, log loss and Brier (binary) and the per-sample
 * sums behind average='samples' (multilabel). scatter_add then adds histogram cells into a
 * state's float64 array.
 *
 * Arrays travel through the buffer protocol (no NumPy headers at build time). Every index used to
 * write into an array is range-checked: bad input raises ValueError (multiclass may then have
 * partly filled its fresh output arrays; scatter_add checks before it adds anything). The loops
 * run without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#define HALF_BITS 0x3F000000   /* float32 0.5 */
#define ONE_BITS 0x3F800000    /* float32 1.0 */
#define Q_MIN_EXPONENT 103     /* biased exponent of 2**-24 = 1 - (largest float32 below 1) */
#define MAX_MANTISSA_BITS 12

/* ---- buffers ------------------------------------------------------------------------------ */

enum kind { F32, F64, I32, I64, BOOL, U16, U64, U8 };

static const char *kind_name[] = {"float32", "float64", "int32", "int64",
                                  "bool",    "uint16",  "uint64", "uint8"};

static int format_matches(const char *format, enum kind kind, Py_ssize_t itemsize)
{
    if (format == NULL) {
        format = "B";
    }
    while (*format == '@' || *format == '=' || *format == '<') {
        format++;
    }
    if (format[0] == '\0' || format[1] != '\0') {
        return 0;
    }
    switch (kind) {
    case F32:
        return format[0] == 'f' && itemsize == 4;
    case F64:
        return format[0] == 'd' && itemsize == 8;
    case I32:
        return strchr("il", format[0]) != NULL && itemsize == 4;
    case I64:
        return strchr("lq", format[0]) != NULL && itemsize == 8;
    case BOOL:
        return format[0] == '?' && itemsize == 1;
    case U16:
        return format[0] == 'H' && itemsize == 2;
    case U64:
        return strchr("LQ", format[0]) != NULL && itemsize == 8;
    case U8:
        return format[0] == 'B' && itemsize == 1;
    }
    return 0;
}

/* A C-contiguous buffer of `kind` with `length` items (-1: any). Returns 0 on success. */
static int get_buffer(PyObject *obj, Py_buffer *view, const char *name, enum kind kind,
                      Py_ssize_t length, int writable)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous%s %s array", name,
                     writable ? " writable" : "", kind_name[kind]);
        return -1;
    }
    if (!format_matches(view->format, kind, view->itemsize)) {
        PyErr_Format(PyExc_TypeError, "%s: expected dtype %s, received buffer format '%s'", name,
                     kind_name[kind], view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    Py_ssize_t n = view->len / view->itemsize;
    if (length >= 0 && n != length) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items, received %zd", name, length, n);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Buffers acquired so far, released together. */
typedef struct {
    Py_buffer views[24];
    int count;
} buffers;

static void release_all(buffers *b)
{
    for (int i = 0; i < b->count; i++) {
        PyBuffer_Release(&b->views[i]);
    }
    b->count = 0;
}

/* Acquire `obj` (or skip None when optional). Returns the data pointer, NULL on error
 * (`*failed` set) or for None. */
static void *acquire(buffers *b, PyObject *obj, const char *name, enum kind kind,
                     Py_ssize_t length, int writable, int optional, int *failed)
{
    if (optional && obj == Py_None) {
        return NULL;
    }
    Py_buffer *view = &b->views[b->count];
    if (get_buffer(obj, view, name, kind, length, writable) != 0) {
        *failed = 1;
        return NULL;
    }
    b->count++;
    return view->buf;
}

static Py_ssize_t items(buffers *b)
{
    Py_buffer *v = &b->views[b->count - 1];
    return v->len / v->itemsize;
}

/* ---- bins --------------------------------------------------------------------------------- */

typedef struct {
    int32_t shift;     /* 23 - m */
    int32_t n_bins;    /* 4 + 149 * 2**m */
    int32_t high_base; /* n_bins - 2 + (103 << m) */
} layout;

/* Whether m is a layout's mantissa bits (0 to MAX_MANTISSA_BITS); else sets ValueError. */
static int mantissa_bits_ok(int m)
{
    if (m < 0 || m > MAX_MANTISSA_BITS) {
        PyErr_Format(PyExc_ValueError, "mantissa_bits: expected 0 to %d, received %d",
                     MAX_MANTISSA_BITS, m);
        return 0;
    }
    return 1;
}

static void make_layout(layout *lay, int m)
{
    lay->shift = 23 - m;
    lay->n_bins = 4 + 149 * (1 << m);
    lay->high_base = lay->n_bins - 2 + (Q_MIN_EXPONENT << m);
}

/* The ordering key of a score: its float32 bits with the sign cleared. For p in [0, 1] keys
 * order as the values do, and -0.0 gets the key of 0.0 (equal, as the float comparison says). */
static inline int32_t key_of(float p)
{
    int32_t bits;
    memcpy(&bits, &p, 4);
    return bits & 0x7FFFFFFF;
}

/* Whether a score is outside [0, 1] (NaN included); -0.0 is inside. */
static inline int32_t outside(float p)
{
    uint32_t bits;
    memcpy(&bits, &p, 4);
    return (bits > (uint32_t)ONE_BITS) & (bits != 0x80000000u);
}

/* BinLayout.bin_of for the key k of a float32 p in [0, 1]. */
static inline int32_t bin_of(int32_t shift, int32_t n_bins, int32_t high_base, int32_t k)
{
    float p, q;
    int32_t qbits;
    memcpy(&p, &k, 4);
    q = 1.0f - p;
    memcpy(&qbits, &q, 4);
    /* selects written as masks, so that the loops over a row compile to vector code */
    const int32_t low = (k >> shift) + 2;
    const int32_t high = high_base - (qbits >> shift);
    const int32_t is_low = -(int32_t)(k < HALF_BITS), is_one = -(int32_t)(k == ONE_BITS);
    int32_t out = (low & is_low) | (high & ~is_low);
    out &= -(int32_t)(k != 0);
    return (out & ~is_one) | ((n_bins - 1) & is_one);
}

/* bin_of with branches, for scalar loops: faster there when most scores fall in one half. */
static inline int32_t bin_of_scalar(int32_t shift, int32_t n_bins, int32_t high_base, int32_t k)
{
    if (k < HALF_BITS) {
        return k == 0 ? 0 : (k >> shift) + 2;
    }
    if (k == ONE_BITS) {
        return n_bins - 1;
    }
    float p, q;
    int32_t qbits;
    memcpy(&p, &k, 4);
    q = 1.0f - p;
    memcpy(&qbits, &q, 4);
    return high_base - (qbits >> shift);
}

/* ---- the label-free fields and the score range, shared by both counting kernels ---------- */

/* counting.prediction_delta's fields and counting.RangeDelta of the rows a kernel counts, each
 * optional (NULL: not asked for). */
typedef struct {
    double *pred_hist;         /* the pred_hist counts (pred_cells: rows * n_pred_bins), or NULL */
    Py_ssize_t pred_cells;
    int32_t *pred_index;       /* else its cell of each score (n * C), or NULL */
    const int32_t *pred_table; /* coarse bin of each bin of pred_lay (or of lay when pred_reuse) */
    layout pred_lay;           /* the fine layout the table reads when the histogram's is not */
    int pred_reuse;            /* whether the histogram's bins index pred_table */
    int32_t n_pred_bins;       /* coarse bins */
    int32_t *range;            /* 2 * n_bins: the batch's own score range (range_note), or NULL */
    double *conf_hist;         /* conf_bins: weight by confidence, or NULL */
    Py_ssize_t conf_bins;
    double low_conf;
    double *conf_tot;          /* 2: weighted confidence, weight below low_conf */
} label_free;

/* Take the label-free arguments (pred_out, pred_table, pred_mantissa_bits, n_pred_bins, range,
 * conf_hist, low_conf, conf_tot) of a kernel of n_cells scores whose histogram has layout lay
 * (binned) and whose pred_hist has pred_rows rows of n_pred_bins; pred_out is pred_hist's dense
 * counts (float64) or each score's cell (int32, n_cells). Allocates the range's scratch.
 * Returns -1 with an exception set. */
static int acquire_label_free(buffers *b, label_free *lf, PyObject *o_pout, PyObject *o_ptab,
                              int pm, int n_pred_bins, PyObject *o_range, PyObject *o_chist,
                              double low_conf, PyObject *o_ctot, Py_ssize_t n_cells,
                              Py_ssize_t pred_rows, const layout *lay, int binned)
{
    int failed = 0;
    if (pm > MAX_MANTISSA_BITS || n_pred_bins < 1) {
        PyErr_Format(PyExc_ValueError, "pred_mantissa_bits %d or n_pred_bins %d out of range",
                     pm, n_pred_bins);
        return -1;
    }
    int dense = 0;
    if (o_pout != Py_None) {
        Py_buffer probe;
        if (PyObject_GetBuffer(o_pout, &probe, PyBUF_FORMAT | PyBUF_ND) != 0) {
            return -1;
        }
        dense = probe.format != NULL && probe.format[0] == 'd';
        PyBuffer_Release(&probe);
    }
    if (dense) {
        lf->pred_cells = pred_rows * n_pred_bins;
        lf->pred_hist = acquire(b, o_pout, "pred_out", F64, lf->pred_cells, 1, 1, &failed);
    } else {
        lf->pred_index = acquire(b, o_pout, "pred_out", I32, n_cells, 1, 1, &failed);
    }
    if (!failed) {
        lf->pred_table = acquire(b, o_ptab, "pred_table", I32, -1, 0, 1, &failed);
    }
    if (failed) {
        return -1;
    }
    lf->n_pred_bins = n_pred_bins;
    if (lf->pred_table) {
        lf->pred_reuse = pm < 0;
        if (!lf->pred_reuse) {
            make_layout(&lf->pred_lay, pm);
        }
        const Py_ssize_t need = lf->pred_reuse ? (binned ? lay->n_bins : 0) : lf->pred_lay.n_bins;
        if (items(b) != need || need == 0) {
            PyErr_Format(PyExc_ValueError, "pred_table: expected one entry per fine bin (%zd), "
                         "received %zd", need, items(b));
            return -1;
        }
        uint32_t outside_any = 0; /* one unsigned compare an entry: vector code */
        for (Py_ssize_t j = 0; j < need; j++) {
            outside_any |= (uint32_t)((uint32_t)lf->pred_table[j] >= (uint32_t)n_pred_bins);
        }
        for (Py_ssize_t j = 0; outside_any && j < need; j++) {
            if (lf->pred_table[j] < 0 || lf->pred_table[j] >= n_pred_bins) {
                PyErr_Format(PyExc_ValueError, "pred_table: coarse bins in [0, %d), received %d "
                             "at %zd", n_pred_bins, lf->pred_table[j], j);
                return -1;
            }
        }
    }
    lf->range = acquire(b, o_range, "range", F32, binned ? 2 * (Py_ssize_t)lay->n_bins : 0, 1, 1,
                        &failed);
    if (!failed) {
        lf->conf_hist = acquire(b, o_chist, "conf_hist", F64, -1, 1, 1, &failed);
        if (!failed && lf->conf_hist) {
            lf->conf_bins = items(b);
        }
    }
    if (!failed) {
        lf->conf_tot = acquire(b, o_ctot, "conf_tot", F64, 2, 1, 1, &failed);
    }
    if (failed) {
        return -1;
    }
    lf->low_conf = low_conf;
    if ((lf->pred_hist == NULL && lf->pred_index == NULL) != (lf->pred_table == NULL) || (lf->range && !binned) ||
        (lf->conf_hist == NULL) != (lf->conf_tot == NULL) ||
        (lf->conf_hist && lf->conf_bins < 1)) {
        PyErr_SetString(PyExc_ValueError, "pred_out needs pred_table, range a histogram, "
                        "conf_hist (at least one bin) conf_tot, and the other way round");
        return -1;
    }
    return 0;
}

/* ---- the row sample's keys ---------------------------------------------------------------- */

/* The key of one row (row_sample.row_keys): the scores' bits, two columns to a native 64-bit word
 * (as numpy's view), times constants k[j] for word j, plus the odd last column's bits times the
 * next constant, plus the label's share, summed with wrapping, then mixed. */
static inline uint64_t row_key(const float *row, Py_ssize_t n_cols, const uint64_t *k,
                               uint64_t label_share)
{
    const Py_ssize_t pairs = n_cols / 2;
    uint64_t h = label_share;
    for (Py_ssize_t j = 0; j < pairs; j++) {
        uint64_t word;
        memcpy(&word, row + 2 * j, sizeof word);
        h += word * k[j];
    }
    if (n_cols % 2) {
        uint32_t last;
        memcpy(&last, row + n_cols - 1, sizeof last);
        h += (uint64_t)last * k[pairs];
    }
    h ^= h >> 32;
    h *= UINT64_C(0xBF58476D1CE4E5B9);
    return h ^ (h >> 29);
}

/* The label's share of a multi-hot row's key: the sum of its true columns' constants. */
static inline uint64_t multihot_share(const uint8_t *hot, Py_ssize_t n_cols, const uint64_t *k)
{
    uint64_t h = 0;
    for (Py_ssize_t c = 0; c < n_cols; c++) {
        h += hot[c] ? k[c] : 0;
    }
    return h;
}

/* A counting kernel's optional row keys: out (uint64, n) and the constants (uint64, the score
 * words', the odd column's, then label_consts for the label). */
typedef struct {
    uint64_t *out;
    const uint64_t *k;
    const uint64_t *k_label;
} key_args;

static int acquire_keys(buffers *b, key_args *ka, PyObject *o_out, PyObject *o_consts,
                        Py_ssize_t n, Py_ssize_t n_cols, Py_ssize_t label_consts)
{
    int failed = 0;
    const Py_ssize_t words = n_cols / 2 + n_cols % 2;
    ka->out = acquire(b, o_out, "row_keys", U64, n, 1, 1, &failed);
    if (!failed) {
        ka->k = acquire(b, o_consts, "key_constants", U64, words + label_consts, 0, 1, &failed);
    }
    if (failed) {
        return -1;
    }
    if ((ka->out == NULL) != (ka->k == NULL)) {
        PyErr_SetString(PyExc_ValueError, "row_keys and key_constants: both or neither");
        return -1;
    }
    ka->k_label = ka->k ? ka->k + words : NULL;
    return 0;
}

/* ---- the within-bin moments ---------------------------------------------------------------- */

/* A counting kernel's optional moments (counting.moment_delta): each in-band score's position
 * inside its bin times its weight, at (0, column, band bin) and, for the column's positive, at
 * (1, column, band bin) of 2 * n_cols * width cells: out (float64) for a weighted batch, count
 * (uint64, the integers an unweighted batch's sums are) for an unweighted one. */
typedef struct {
    double *out;     /* or NULL */
    uint64_t *count; /* or NULL */
    int32_t first, width, low_mask, t_shift;
    Py_ssize_t pos_rows;
} moment_args;

static int acquire_moments(buffers *b, moment_args *ma, PyObject *o_out, int J, int Q,
                           Py_ssize_t n_cols, const layout *lay, int binned)
{
    memset(ma, 0, sizeof *ma);
    if (o_out == Py_None) {
        return 0;
    }
    const int m = 23 - lay->shift;
    if (!binned || J < 0 || J > 100 || Q < 0 || Q > lay->shift) {
        PyErr_Format(PyExc_ValueError, "moments: a binned histogram, octaves in [0, 100] and "
                     "bits in [0, 23 - mantissa_bits], received %d and %d", J, Q);
        return -1;
    }
    int failed = 0;
    ma->width = 2 * (J << m) + 1;
    ma->first = 2 + ((126 - J) << m);
    ma->low_mask = (1 << lay->shift) - 1;
    ma->t_shift = lay->shift - Q;
    ma->pos_rows = n_cols * ma->width;
    Py_buffer probe;
    if (PyObject_GetBuffer(o_out, &probe, PyBUF_FORMAT | PyBUF_ND) != 0) {
        return -1;
    }
    const int sums = probe.format != NULL && probe.format[0] == 'd';
    PyBuffer_Release(&probe);
    if (sums) {
        ma->out = acquire(b, o_out, "moment", F64, 2 * ma->pos_rows, 1, 0, &failed);
    } else {
        ma->count = acquire(b, o_out, "moment", U64, 2 * ma->pos_rows, 1, 0, &failed);
    }
    return failed ? -1 : 0;
}

/* The position of score p (key k) inside its bin to the moments' bits: the mantissa bits below
 * the bin's, of p below 0.5 and of 1 - p from 0.5 (where the bins follow 1 - p). */
static inline int32_t moment_position(const moment_args *ma, int32_t k, float p)
{
    const float q = 1.0f - p;
    int32_t qbits;
    memcpy(&qbits, &q, 4);
    const int32_t upper = -(int32_t)(k >= HALF_BITS); /* a mask: which half is random */
    const int32_t bits = (qbits & upper) | (k & ~upper);
    return (bits & ma->low_mask) >> ma->t_shift;
}

/* Note a score of bin fb (key k, weight w) in the moments' row starting at cell row, when the
 * bin is in the band. */
static inline void moment_note(const moment_args *ma, Py_ssize_t row, int32_t fb, int32_t k,
                               float p, double w)
{
    const uint32_t mb = (uint32_t)(fb - ma->first);
    if (mb < (uint32_t)ma->width) {
        const int32_t pos = moment_position(ma, k, p);
        if (ma->count) {
            ma->count[row + mb] += (uint64_t)pos;
        } else {
            ma->out[row + mb] += w * (double)pos;
        }
    }
}

/* ---- multiclass --------------------------------------------------------------------------- */

typedef struct {
    /* inputs */
    const float *scores;
    const int64_t *labels;
    const double *weights; /* NULL: every sample weighs 1 */
    Py_ssize_t n;
    int K;
    layout lay;
    int binned, full_ovo, do_rank;
    Py_ssize_t k_len;
    Py_ssize_t cal_bins;
    double log_eps;
    /* outputs (accumulated into) */
    int32_t *index;      /* n * K histogram cells, or NULL */
    int32_t *pos_index;  /* n cells of POS (one-vs-rest layout), or NULL */
    double *confusion;   /* K * K */
    double *rank;        /* k_len */
    double *calibration; /* 3 * cal_bins */
    double *prob_sum;    /* K */
    double *totals;      /* weight total, log loss, Brier */
    label_free lf; /* the label-free fields of the same rows */
    key_args keys; /* the row sample's keys of the same rows */
    moment_args mom; /* the within-bin moments of the same rows */
    /* error report */
    Py_ssize_t bad_row;
    int bad_what; /* 1: label out of range, 2: score outside [0, 1] */
} mc_args;

/* Note key k in the batch's own score range of bin b without a branch (which bins a batch meets
 * first is random: a test mispredicts): high[b] keeps the largest key + 1 and low[b] RANGE_TOP -
 * the smallest key, both int32 maxima over the zeros the caller passes (0: empty). range_finish
 * then writes counting.RangeDelta's form in place. */
#define RANGE_TOP 0x7F7FFFFF /* bits of the largest finite float32 */
static inline void range_note(int32_t *restrict high, int32_t *restrict low, int32_t b, int32_t k)
{
    const int32_t h = k + 1, l = RANGE_TOP - k;
    high[b] = high[b] > h ? high[b] : h;
    low[b] = low[b] > l ? low[b] : l;
}

/* range_note behind a test that skips a score whose bin already covers its key: cheaper where
 * the test is predictable (many columns, most scores in bins the batch has seen). */
static inline void range_note_tested(int32_t *restrict high, int32_t *restrict low, int32_t b,
                                     int32_t k)
{
    if ((high[b] <= k) | (low[b] < RANGE_TOP - k)) {
        range_note(high, low, b, k);
    }
}

/* counting.RangeDelta's form of range_note's maxima over n_bins bins: (0, 0) empty, (k,
 * RANGE_TOP - k) one key k, both RANGE_TOP (float32 max) mixed. */
static void range_finish(int32_t *restrict high, int32_t *restrict low, int32_t n_bins)
{
    for (int32_t b = 0; b < n_bins; b++) {
        const int32_t h = high[b], l = low[b];
        /* unsigned: the sum of two keys' terms may pass INT32_MAX */
        const int32_t empty = -(int32_t)(l == 0);
        const int32_t one = -(int32_t)((uint32_t)(h - 1) + (uint32_t)l == RANGE_TOP);
        const int32_t mixed = ~(empty | one);
        high[b] = ((h - 1) & one) | (RANGE_TOP & mixed);
        low[b] = (l & one) | (RANGE_TOP & mixed);
    }
}

/* Counts of a whole number of samples, float64, as uint64 in the same memory. */
static void as_counts(double *cells, Py_ssize_t n_cells)
{
    for (Py_ssize_t j = 0; j < n_cells; j++) {
        const uint64_t count = (uint64_t)(int64_t)cells[j]; /* a count is below 2**63 */
        memcpy(cells + j, &count, sizeof count);
    }
}

/* What a kernel does after its loop: the score range in counting.RangeDelta's form and, for an
 * unweighted batch (whole-number counts), pred_hist's dense counts as uint64 in their own memory
 * (fastcount reads them so), which a compact state adds as they are. */
static void finish_outputs(label_free *lf, const layout *lay, int weighted)
{
    if (lf->range) {
        range_finish(lf->range, lf->range + lay->n_bins, lay->n_bins);
    }
    if (!weighted && lf->pred_hist) {
        as_counts(lf->pred_hist, lf->pred_cells);
    }
}

/* Rows whose log loss an unweighted batch takes with one log (log is most of a row's cost at few
 * columns). Rows whose true-class probability p is at most 1/2 multiply their p: 16 rounded
 * products are within 16 ulp, 2e-15 on a log of at least 16 * 0.69. A product of p near 1 would
 * lose the tiny losses' relative precision (1e-9 at p = 1 - eps), so rows above 1/2 keep
 * q = 1 - (the product), q <- q + d - q d with d = 1 - p exact, a few ulp of q a step, and take
 * -log1p(-q): the sum stays within about 1e-14 of the rows' own logs. */
#define LOG_GROUP 16

/* Everything is copied to locals first: stores through the output pointers could otherwise
 * alias the arguments, and the compiler would reload them in the inner loops. K_const is the
 * number of columns when the caller knows it at compile time (multiclass_loop), else 0. */
static inline __attribute__((always_inline)) int multiclass_loop_k(mc_args *a, const int K_const)
{
    const float *restrict scores = a->scores;
    const int64_t *restrict labels = a->labels;
    const double *restrict weights = a->weights;
    int32_t *restrict index = a->index;
    int32_t *restrict pos_index = a->pos_index;
    double *restrict confusion = a->confusion;
    double *restrict rank = a->rank;
    double *restrict cal = a->calibration;
    double *restrict prob_sum = a->prob_sum;
    const Py_ssize_t n = a->n, k_len = a->k_len, cal_bins = a->cal_bins;
    const int K = K_const ? K_const : a->K, do_rank = a->do_rank;
    /* measured: at 10 columns the fused loop runs 0.88x the split loops' instructions */
    const int fused = K < 12;
    const int32_t shift = a->lay.shift, B = a->lay.n_bins, high_base = a->lay.high_base;
    const int32_t row_stride = a->full_ovo ? K * B : 0;
    const double lo = a->log_eps, hi = 1.0 - a->log_eps, nb = (double)cal_bins;
    double wsum = 0.0, ll = 0.0, brier = 0.0;
    /* the product of LOG_GROUP probabilities of at least lo stays a normal double */
    const int log_group = lo >= 1e-19 ? LOG_GROUP : 1;
    double ll_prod = 1.0, ll_q = 0.0;
    int ll_rows = 0, ll_q_rows = 0;
    double *restrict pred_hist = a->lf.pred_hist;
    int32_t *restrict pred_index = a->lf.pred_index;
    const int32_t *restrict pred_table = a->lf.pred_table;
    const int pred_reuse = a->lf.pred_reuse;
    const int32_t pshift = a->lf.pred_lay.shift, pB = a->lf.pred_lay.n_bins;
    const int32_t phigh = a->lf.pred_lay.high_base, Bc = a->lf.n_pred_bins;
    int32_t *restrict r_high = a->lf.range;
    int32_t *restrict r_low = a->lf.range ? a->lf.range + B : NULL;
    double *restrict conf_hist = a->lf.conf_hist;
    const Py_ssize_t conf_bins = a->lf.conf_bins;
    const double cnb = (double)conf_bins, low_conf = a->lf.low_conf;
    double csum = 0.0, clow = 0.0;
    int32_t fine[12] = {0}, keys[12] = {0}; /* the fused loop's bins and keys of a row */
    const int mom_on = a->mom.out != NULL || a->mom.count != NULL;
    const int32_t mwidth = a->mom.width;
    const Py_ssize_t mom_pos = a->mom.pos_rows;
    uint64_t *restrict key_out = a->keys.out;
    const uint64_t *restrict key_k = a->keys.k, *restrict key_label = a->keys.k_label;

    for (Py_ssize_t i = 0; i < n; i++) {
        const float *restrict row = scores + i * K;
        const int64_t y64 = labels[i];
        if (y64 < 0 || y64 >= K) {
            a->bad_row = i;
            a->bad_what = 1;
            return -1;
        }
        const int y = (int)y64;
        const double w = weights ? weights[i] : 1.0;
        const float sy = row[y];
        const int32_t ky = key_of(sy);

        /* the rank of the true class, as sklearn's stable argsort reversed (later ties
         * first): the columns c whose key k is above ky, or equal to it with c > y, i.e.
         * k + (c > y) > ky (unsigned: a key is at most 0x7FFFFFFF); the fused loop counts the
         * keys above and below ky and looks for the ties only when there are some */
        const uint32_t uky = (uint32_t)ky;
        int32_t bad = 0, above = 0;
        int pred = 0;
        double sq;
        if (fused) {
            /* few columns: one scalar loop (vector code would not pay for its set-up) */
            int32_t higher = 0, lower = 0, n_upper = 0;
            /* (key << 8) | (255 - column) of each score: its maximum, taken without a branch
             * (which column holds a row's largest score is random), is numpy.argmax's first
             * maximal key */
            int64_t best = INT64_MIN;
            uint32_t sign = 0; /* the row's sign bits: a negative score, or -0.0 */
            int32_t *restrict cells = index ? index + i * K : NULL;
            const int32_t base = y * row_stride;
            sq = 0.0;
            _Pragma("GCC unroll 12")
            for (int c = 0; c < K; c++) {
                const float p = row[c];
                const int32_t k = key_of(p);
                uint32_t bits;
                memcpy(&bits, &p, 4);
                sign |= bits;
                if (cells) {
                    /* the lower half's bin (0 for 0.0); a score from 0.5 is mended below */
                    const int32_t fb = ((k >> shift) + 2) & -(int32_t)(k != 0);
                    cells[c] = base + c * B + fb;
                    fine[c] = fb;
                    keys[c] = k;
                }
                n_upper += k >= HALF_BITS;
                const int64_t packed = ((int64_t)k << 8) | (255 - c);
                best = packed > best ? packed : best;
                higher += uky < (uint32_t)k;
                lower += (uint32_t)k < uky;
                const double pd = (double)p;
                sq += pd * pd;
                prob_sum[c] += w * pd;
            }
            const int32_t kmax = (int32_t)(best >> 8);
            pred = 255 - (int)(best & 255);
            /* outside [0, 1] (NaN included) shows in the largest key or a sign bit; only then
             * is the row checked score by score (-0.0 is inside) */
            if ((kmax > ONE_BITS) | (sign >> 31)) {
                for (int c = 0; c < K; c++) {
                    bad |= outside(row[c]);
                }
            }
            if (cells && !bad) {
                /* scores from 0.5 take the upper half's bin: in a probability row at most the
                 * largest (the argmax: without a branch), else (two halves) each of them */
                if (n_upper > 1) {
                    for (int c = 0; c < K; c++) {
                        if (keys[c] >= HALF_BITS) {
                            fine[c] = bin_of_scalar(shift, B, high_base, keys[c]);
                            cells[c] = base + c * B + fine[c];
                        }
                    }
                } else {
                    const int32_t up = -(int32_t)(n_upper != 0);
                    const int32_t upper_bin = bin_of(shift, B, high_base, kmax);
                    const int32_t fb = (upper_bin & up) | (fine[pred] & ~up);
                    fine[pred] = fb;
                    cells[pred] = base + pred * B + fb;
                }
            }
            above = higher;
            if (higher + lower < K - 1) { /* another column ties with the true class's */
                for (int c = y + 1; c < K; c++) {
                    above += key_of(row[c]) == ky;
                }
            }
        } else {
            /* integer pass: range check, cells, maximum key, rank terms */
            int32_t kmax = 0;
            if (index) {
                int32_t *restrict cells = index + i * K;
                const int32_t base = y * row_stride;
                for (int c = 0; c < K; c++) {
                    cells[c] = base + c * B + bin_of(shift, B, high_base, key_of(row[c]));
                }
            }
            for (int c = 0; c < K; c++) {
                const int32_t k = key_of(row[c]);
                bad |= outside(row[c]);
                kmax = k > kmax ? k : kmax;
                above += (uint32_t)k + (uint32_t)(c > y) > uky;
            }
            /* the first maximal score, as numpy.argmax */
            while (key_of(row[pred]) != kmax) {
                pred++;
            }

            /* floating pass: sum of squares (four partial sums), probability sums */
            double sq4[4] = {0.0, 0.0, 0.0, 0.0};
            int c = 0;
            for (; c + 4 <= K; c += 4) {
                for (int j = 0; j < 4; j++) {
                    const double p = (double)row[c + j];
                    sq4[j] += p * p;
                    prob_sum[c + j] += w * p;
                }
            }
            for (; c < K; c++) {
                const double p = (double)row[c];
                sq4[c & 3] += p * p;
                prob_sum[c] += w * p;
            }
            sq = (sq4[0] + sq4[1]) + (sq4[2] + sq4[3]);
        }
        if (bad) {
            a->bad_row = i;
            a->bad_what = 2;
            return -1;
        }
        if (key_out) {
            key_out[i] = row_key(row, K, key_k, (uint64_t)y * key_label[0]);
        }

        if (fused) {
            /* after the row's check (a bad score has no bin), from the bins and keys the fused
             * loop kept in fine[] and keys[] */
            if (r_high) { /* the score range */
                _Pragma("GCC unroll 12")
                for (int c = 0; c < K; c++) {
                    range_note(r_high, r_low, fine[c], keys[c]);
                }
            }
            if (mom_on) { /* the in-band scores' positions: their columns' rows, the positives' */
                _Pragma("GCC unroll 12")
                for (int c = 0; c < K; c++) {
                    moment_note(&a->mom, c * mwidth, fine[c], keys[c], row[c], w);
                }
                moment_note(&a->mom, mom_pos + y * mwidth, fine[y], ky, sy, w);
            }
            if (pred_hist) { /* the coarse layout nests in the fine: pred_bins.pred_bin_of_fine */
                double *restrict prow = pred_hist + (Py_ssize_t)pred * K * Bc;
                _Pragma("GCC unroll 12")
                for (int c = 0; c < K; c++) {
                    const int32_t pb =
                        pred_reuse ? fine[c] : bin_of_scalar(pshift, pB, phigh, key_of(row[c]));
                    prow[c * Bc + pred_table[pb]] += w;
                }
            } else if (pred_table) { /* each score's cell: a dense table larger than the batch */
                const int32_t first = pred * K;
                for (int c = 0; c < K; c++) {
                    const int32_t k = key_of(row[c]);
                    const int32_t pb = pred_reuse ? fine[c] : bin_of_scalar(pshift, pB, phigh, k);
                    pred_index[i * K + c] = first * Bc + c * Bc + pred_table[pb];
                }
            }
        } else if (r_high || mom_on || pred_table) {
            /* many columns: the range, the moments and pred_hist's cells in one loop over the
             * row, each score's bin (from its cell, less the row's and column's offsets) and key
             * taken once; the range tested before it is written (most of many columns' scores
             * meet a bin the batch has seen: the test is predictable there) */
            const int32_t *restrict cells = index ? index + i * K : NULL;
            const int32_t base = y * row_stride, first = pred * K;
            double *restrict prow = pred_hist ? pred_hist + (Py_ssize_t)first * Bc : NULL;
            for (int c = 0; c < K; c++) {
                const int32_t k = key_of(row[c]);
                const int32_t fb = cells ? cells[c] - base - c * B : 0;
                if (r_high) {
                    range_note_tested(r_high, r_low, fb, k);
                }
                if (mom_on) {
                    moment_note(&a->mom, c * mwidth, fb, k, row[c], w);
                }
                if (pred_table) {
                    const int32_t pb = pred_reuse ? fb : bin_of_scalar(pshift, pB, phigh, k);
                    const int32_t cell = c * Bc + pred_table[pb];
                    if (prow) {
                        prow[cell] += w;
                    } else {
                        pred_index[i * K + c] = first * Bc + cell;
                    }
                }
            }
            if (mom_on) {
                moment_note(&a->mom, mom_pos + y * mwidth, cells[y] - base - y * B, ky, sy, w);
            }
        }
        if (pos_index) {
            pos_index[i] = y * B + bin_of(shift, B, high_base, ky);
        }
        confusion[y * K + pred] += w;
        if (do_rank) {
            const Py_ssize_t r = (Py_ssize_t)above;
            if (r < k_len) {
                rank[r] += w;
            }
        }
        double pt = (double)sy;
        pt = pt < lo ? lo : (pt > hi ? hi : pt);
        if (weights) {
            ll += w * -log(pt);
        } else if (pt > 0.5) { /* 1 - the product of the group's, kept relative: LOG_GROUP */
            const double d = 1.0 - pt; /* exact (Sterbenz) */
            ll_q = ll_q + d - ll_q * d;
            if (++ll_q_rows == LOG_GROUP) {
                ll -= log1p(-ll_q);
                ll_q = 0.0;
                ll_q_rows = 0;
            }
        } else { /* the product of the group's: LOG_GROUP */
            ll_prod *= pt;
            if (++ll_rows == log_group) {
                ll -= log(ll_prod);
                ll_prod = 1.0;
                ll_rows = 0;
            }
        }
        sq += 1.0 - 2.0 * (double)sy;
        brier += w * sq;
        wsum += w;
        const double conf = (double)row[pred];
        Py_ssize_t cb = (Py_ssize_t)(conf * nb);
        cb = cb > cal_bins - 1 ? cal_bins - 1 : cb;
        cal[cb] += w;
        cal[cal_bins + cb] += w * conf;
        cal[2 * cal_bins + cb] += pred == y ? w : 0.0;
        if (conf_hist) {
            Py_ssize_t qb = (Py_ssize_t)(conf * cnb);
            qb = qb > conf_bins - 1 ? conf_bins - 1 : qb;
            conf_hist[qb] += w;
            csum += w * conf;
            clow += conf < low_conf ? w : 0.0;
        }
    }
    if (ll_rows) {
        ll -= log(ll_prod);
    }
    if (ll_q_rows) {
        ll -= log1p(-ll_q);
    }
    a->totals[0] += wsum;
    a->totals[1] += ll;
    a->totals[2] += brier;
    if (conf_hist) {
        a->lf.conf_tot[0] += csum;
        a->lf.conf_tot[1] += clow;
    }
    return 0;
}

/* multiclass_loop_k with the column count as a constant for the fused (few columns) loops: the
 * compiler unrolls their columns and keeps a row's bins and keys in registers. */
static int multiclass_loop(mc_args *a)
{
#define FUSED_CASE(k) \
    case k:           \
        return multiclass_loop_k(a, k);
    switch (a->K) {
        FUSED_CASE(2) FUSED_CASE(3) FUSED_CASE(4) FUSED_CASE(5) FUSED_CASE(6)
        FUSED_CASE(7) FUSED_CASE(8) FUSED_CASE(9) FUSED_CASE(10) FUSED_CASE(11)
    default:
        return multiclass_loop_k(a, 0);
    }
#undef FUSED_CASE
}

PyDoc_STRVAR(multiclass_doc,
"multiclass(scores, labels, weights, n_classes, mantissa_bits, full_ovo, do_rank, log_eps,\n"
"           index, pos_index, confusion, rank, calibration, prob_sum, totals,\n"
"           pred_out, pred_table, pred_mantissa_bits, n_pred_bins, range, conf_hist,\n"
"           low_conf, conf_tot)\n"
"--\n\n"
"Count one multiclass batch. scores: float32 (n * K); labels: int64 (n); weights: float64 (n)\n"
"or None; mantissa_bits < 0: no histogram (index and pos_index None). Writes the histogram\n"
"cells into index (int32, n * K) and, for the one-vs-rest layout (full_ovo false), the POS\n"
"cells into pos_index (int32, n); adds into the float64 arrays confusion (K * K), rank,\n"
"calibration (3 * bins), prob_sum (K) and totals (weight total, log loss, Brier).\n\n"
"The label-free fields of the same rows (counting.prediction_delta), each None to skip:\n"
"pred_out takes each score's pred_hist cell, (predicted class * K + column) * n_pred_bins +\n"
"pred_table[fine bin], the fine bin being the histogram's when pred_mantissa_bits < 0 and else\n"
"the bin of that layout: as the dense counts (float64, K * K * n_pred_bins, zeros: the weight\n"
"added) or as the cells (int32, n * K); range (float32, 2 * n_bins, zeros) gets the batch's own\n"
"score range (counting.RangeDelta; histogram required); conf_hist (float64, bins) and conf_tot\n"
"(float64, 2) add the weight by top probability, the weighted top probability and the weight\n"
"whose top probability is below low_conf.");

static PyObject *multiclass(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_scores, *o_labels, *o_weights, *o_index, *o_pos, *o_conf, *o_rank, *o_cal,
        *o_prob, *o_tot, *o_pidx, *o_ptab, *o_range, *o_chist, *o_ctot, *o_keys = Py_None,
        *o_kconst = Py_None, *o_mom = Py_None;
    int K, m, full_ovo, do_rank, pm, n_pred_bins, mom_J = 0, mom_Q = 0;
    double log_eps, low_conf;
    if (!PyArg_ParseTuple(args, "OOOiippdOOOOOOOOOiiOOdO|OOOii:multiclass", &o_scores,
                          &o_labels, &o_weights, &K, &m, &full_ovo, &do_rank, &log_eps, &o_index,
                          &o_pos, &o_conf, &o_rank, &o_cal, &o_prob, &o_tot, &o_pidx, &o_ptab,
                          &pm, &n_pred_bins, &o_range, &o_chist, &low_conf, &o_ctot, &o_keys,
                          &o_kconst, &o_mom, &mom_J, &mom_Q)) {
        return NULL;
    }
    if (K < 1 || m > MAX_MANTISSA_BITS) {
        return PyErr_Format(PyExc_ValueError, "n_classes %d or mantissa_bits %d out of range",
                            K, m);
    }
    mc_args a;
    memset(&a, 0, sizeof a);
    a.K = K;
    a.binned = m >= 0;
    a.full_ovo = full_ovo;
    a.do_rank = do_rank;
    a.log_eps = log_eps;
    if (a.binned) {
        make_layout(&a.lay, m);
        if ((int64_t)(full_ovo ? K : 1) * K * a.lay.n_bins >= INT32_MAX) {
            return PyErr_Format(PyExc_ValueError, "the histogram's cells do not fit int32");
        }
    }

    buffers b = {.count = 0};
    int failed = 0;
    a.labels = acquire(&b, o_labels, "labels", I64, -1, 0, 0, &failed);
    if (failed) {
        goto fail;
    }
    a.n = items(&b);
    Py_ssize_t nK = a.n * K;
    a.scores = acquire(&b, o_scores, "scores", F32, nK, 0, 0, &failed);
    if (!failed) {
        a.weights = acquire(&b, o_weights, "weights", F64, a.n, 0, 1, &failed);
    }
    if (!failed) {
        a.index = acquire(&b, o_index, "index", I32, nK, 1, 1, &failed);
    }
    if (!failed) {
        a.pos_index = acquire(&b, o_pos, "pos_index", I32, a.n, 1, 1, &failed);
    }
    if (!failed) {
        a.confusion = acquire(&b, o_conf, "confusion", F64, (Py_ssize_t)K * K, 1, 0, &failed);
    }
    if (!failed) {
        a.rank = acquire(&b, o_rank, "rank", F64, -1, 1, 0, &failed);
        if (!failed) {
            a.k_len = items(&b);
        }
    }
    if (!failed) {
        a.calibration = acquire(&b, o_cal, "calibration", F64, -1, 1, 0, &failed);
        if (!failed) {
            a.cal_bins = items(&b) / 3;
        }
    }
    if (!failed) {
        a.prob_sum = acquire(&b, o_prob, "prob_sum", F64, K, 1, 0, &failed);
    }
    if (!failed) {
        a.totals = acquire(&b, o_tot, "totals", F64, 3, 1, 0, &failed);
    }
    if (failed || acquire_label_free(&b, &a.lf, o_pidx, o_ptab, pm, n_pred_bins, o_range,
                                     o_chist, low_conf, o_ctot, nK, (Py_ssize_t)K * K,
                                     &a.lay, a.binned) != 0 ||
        acquire_keys(&b, &a.keys, o_keys, o_kconst, a.n, K, 1) != 0 ||
        acquire_moments(&b, &a.mom, o_mom, mom_J, mom_Q, K, &a.lay, a.binned) != 0) {
        goto fail;
    }
    if (a.binned && (a.index == NULL || (!full_ovo && a.pos_index == NULL))) {
        PyErr_SetString(PyExc_ValueError, "index (and pos_index for one-vs-rest) are required");
        goto fail;
    }
    if (a.cal_bins < 1 || a.k_len < 1) {
        PyErr_SetString(PyExc_ValueError, "calibration needs 3 * bins items, rank at least 1");
        goto fail;
    }
    if (!a.binned) {
        a.index = NULL;
        a.pos_index = NULL;
    } else if (full_ovo) {
        a.pos_index = NULL;
    }

    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = multiclass_loop(&a);
    if (rc == 0) {
        finish_outputs(&a.lf, &a.lay, a.weights != NULL);
    }
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        if (a.bad_what == 1) {
            PyErr_Format(PyExc_ValueError, "labels: class indices in [0, %d), received %lld at row %zd",
                         K, (long long)a.labels[a.bad_row], a.bad_row);
        } else {
            PyErr_Format(PyExc_ValueError, "scores: probabilities in [0, 1], row %zd is not",
                         a.bad_row);
        }
        goto fail;
    }
    release_all(&b);
    Py_RETURN_NONE;

fail:
    release_all(&b);
    return NULL;
}

/* ---- binary and multilabel --------------------------------------------------------------- */

typedef struct {
    const float *scores;    /* n * C */
    const uint8_t *labels;  /* n * C, 0 or 1 */
    const double *weights;  /* n, or NULL */
    const float *thresholds; /* C */
    Py_ssize_t n;
    int C;
    layout lay;
    int binned, binary, samples;
    Py_ssize_t cal_bins;
    double log_eps;
    int32_t *all_index;   /* n * C, or NULL */
    int32_t *pos_index;   /* up to n * C: cells of the positive entries, in order */
    double *pos_weights;  /* their weights (weighted batches), or NULL */
    Py_ssize_t n_pos;     /* out: entries written to pos_index */
    double *label_counts; /* C * 4: tn, fp, fn, tp */
    double *calibration;  /* 3 * cal_bins */
    double *prob_sum;     /* C */
    double *totals;       /* weight total, log loss, Brier */
    double *samples_out;  /* 9: precision, recall, f1, subset, mismatches; auc, auc weight;
                             ap, ap weight */
    label_free lf;        /* the label-free fields of the same rows */
    key_args keys;        /* the row sample's keys of the same rows */
    moment_args mom;      /* the within-bin moments of the same rows */
    Py_ssize_t bad_row;
} lw_args;

static int labelwise_loop(lw_args *a)
{
    const float *restrict scores = a->scores;
    const uint8_t *restrict labels = a->labels;
    const double *restrict weights = a->weights;
    const float *restrict thresholds = a->thresholds;
    int32_t *restrict all_index = a->all_index;
    int32_t *restrict pos_index = a->pos_index;
    double *restrict pos_weights = a->pos_weights;
    double *restrict counts = a->label_counts;
    double *restrict cal = a->calibration;
    double *restrict prob_sum = a->prob_sum;
    const Py_ssize_t n = a->n, cal_bins = a->cal_bins;
    const int C = a->C;
    const int32_t shift = a->lay.shift, B = a->lay.n_bins, high_base = a->lay.high_base;
    const double lo = a->log_eps, hi = 1.0 - a->log_eps, nb = (double)cal_bins;
    double wsum = 0.0, ll = 0.0, brier = 0.0;
    double prf[5] = {0.0, 0.0, 0.0, 0.0, 0.0}, auc = 0.0, auc_w = 0.0, ap = 0.0, ap_w = 0.0;
    Py_ssize_t n_pos = 0;
    double *restrict pred_hist = a->lf.pred_hist;
    int32_t *restrict pred_index = a->lf.pred_index;
    const int32_t *restrict pred_table = a->lf.pred_table;
    const int pred_reuse = a->lf.pred_reuse;
    const int32_t pshift = a->lf.pred_lay.shift, pB = a->lf.pred_lay.n_bins;
    const int32_t phigh = a->lf.pred_lay.high_base, Bc = a->lf.n_pred_bins;
    int32_t *restrict r_high = a->lf.range;
    int32_t *restrict r_low = a->lf.range ? a->lf.range + B : NULL;
    double *restrict conf_hist = a->lf.conf_hist;
    const Py_ssize_t conf_bins = a->lf.conf_bins;
    const double cnb = (double)conf_bins, low_conf = a->lf.low_conf;
    double csum = 0.0, clow = 0.0;
    uint64_t *restrict key_out = a->keys.out;
    const uint64_t *restrict key_k = a->keys.k, *restrict key_label = a->keys.k_label;
    const int mom_on = a->mom.out != NULL || a->mom.count != NULL;
    const int32_t mwidth = a->mom.width;
    const Py_ssize_t mom_pos = a->mom.pos_rows;

    for (Py_ssize_t i = 0; i < n; i++) {
        const float *restrict row = scores + i * C;
        const uint8_t *restrict yrow = labels + i * C;
        const double w = weights ? weights[i] : 1.0;
        int32_t bad = 0;
        int tp = 0, n_pred = 0, n_true = 0;
        for (int c = 0; c < C; c++) {
            const float p = row[c];
            bad |= outside(p) | (yrow[c] > 1);
        }
        if (bad) {
            a->bad_row = i;
            return -1;
        }
        if (key_out) {
            key_out[i] = row_key(row, C, key_k, multihot_share(yrow, C, key_label));
        }
        for (int c = 0; c < C; c++) {
            const float p = row[c];
            const int y = yrow[c];
            const int pred = p >= thresholds[c];
            int32_t fb = 0;
            if (all_index) {
                fb = bin_of_scalar(shift, B, high_base, key_of(p));
                const int32_t cell = c * B + fb;
                all_index[i * C + c] = cell;
                if (y) {
                    pos_index[n_pos] = cell;
                    if (pos_weights) {
                        pos_weights[n_pos] = w;
                    }
                    n_pos++;
                }
            }
            if (r_high) {
                range_note(r_high, r_low, fb, key_of(p));
            }
            if (mom_on) {
                moment_note(&a->mom, c * mwidth, fb, key_of(p), p, w);
                if (y) {
                    moment_note(&a->mom, mom_pos + c * mwidth, fb, key_of(p), p, w);
                }
            }
            if (pred_table) {
                /* (column, predicted side, coarse bin): counting._pred_hist_delta */
                const int32_t pb = pred_reuse ? fb : bin_of_scalar(pshift, pB, phigh, key_of(p));
                const int32_t cell = (2 * c + pred) * Bc + pred_table[pb];
                if (pred_hist) {
                    pred_hist[cell] += w;
                } else {
                    pred_index[i * C + c] = cell;
                }
            }
            if (conf_hist) {
                /* the probability of the predicted side: counting.confidence_of */
                const double pf = (double)p, conf = pf > 1.0 - pf ? pf : 1.0 - pf;
                Py_ssize_t qb = (Py_ssize_t)(conf * cnb);
                qb = qb > conf_bins - 1 ? conf_bins - 1 : qb;
                conf_hist[qb] += w;
                csum += w * conf;
                clow += conf < low_conf ? w : 0.0;
            }
            counts[c * 4 + y * 2 + pred] += w;
            tp += pred & y;
            n_pred += pred;
            n_true += y;
            const double pd = (double)p;
            prob_sum[c] += w * pd;
            Py_ssize_t cb = (Py_ssize_t)(pd * nb);
            cb = cb > cal_bins - 1 ? cal_bins - 1 : cb;
            cal[cb] += w;
            cal[cal_bins + cb] += w * pd;
            cal[2 * cal_bins + cb] += y ? w : 0.0;
        }
        wsum += w;
        if (a->binary) {
            const double pd = (double)row[0];
            const double pc = pd < lo ? lo : (pd > hi ? hi : pd);
            ll += w * -(yrow[0] ? log(pc) : log1p(-pc));
            const double d = (double)yrow[0] - pd;
            brier += w * (d * d);
        }
        if (!a->samples) {
            continue;
        }
        /* sklearn's average='samples': precision, recall, f1 (0 where undefined), subset
         * accuracy, label mismatches (Hamming) */
        const int fp = n_pred - tp, fn = n_true - tp;
        prf[0] += w * (n_pred > 0 ? (double)tp / n_pred : 0.0);
        prf[1] += w * (n_true > 0 ? (double)tp / n_true : 0.0);
        prf[2] += w * (2 * tp + fp + fn > 0 ? 2.0 * tp / (2 * tp + fp + fn) : 0.0);
        prf[3] += w * (fp + fn == 0 ? 1.0 : 0.0);
        prf[4] += w * (double)(fp + fn);
        /* the row's own AUC (ties count one half) and average precision */
        if (n_true == 0) {
            continue;
        }
        Py_ssize_t wins2 = 0; /* twice the wins: integer */
        double prec = 0.0;
        for (int c = 0; c < C; c++) {
            if (!yrow[c]) {
                continue;
            }
            const float sa = row[c];
            int n_ge = 0, n_pos_ge = 0;
            for (int d = 0; d < C; d++) {
                const float sb = row[d];
                const int ge = sb >= sa;
                n_ge += ge;
                n_pos_ge += ge & yrow[d];
                if (!yrow[d]) {
                    wins2 += 2 * (sa > sb) + (sa == sb);
                }
            }
            prec += (double)n_pos_ge / (n_ge > 0 ? n_ge : 1);
        }
        ap += w * (prec / n_true);
        ap_w += w;
        const Py_ssize_t n_pairs = (Py_ssize_t)n_true * (C - n_true);
        if (n_pairs > 0) {
            auc += w * (0.5 * (double)wins2 / (double)n_pairs);
            auc_w += w;
        }
    }
    a->n_pos = n_pos;
    if (conf_hist) {
        a->lf.conf_tot[0] += csum;
        a->lf.conf_tot[1] += clow;
    }
    a->totals[0] += wsum;
    a->totals[1] += ll;
    a->totals[2] += brier;
    if (a->samples) {
        for (int j = 0; j < 5; j++) {
            a->samples_out[j] += prf[j];
        }
        a->samples_out[5] += auc;
        a->samples_out[6] += auc_w;
        a->samples_out[7] += ap;
        a->samples_out[8] += ap_w;
    }
    return 0;
}

PyDoc_STRVAR(labelwise_doc,
"labelwise(scores, labels, weights, thresholds, mantissa_bits, binary, samples, log_eps,\n"
"          all_index, pos_index, pos_weights, label_counts, calibration, prob_sum, totals,\n"
"          samples_out, pred_out, pred_table, pred_mantissa_bits, n_pred_bins, range,\n"
"          conf_hist, low_conf, conf_tot) -> n_pos\n"
"--\n\n"
"Count one binary or multilabel batch. scores: float32 (n * C); labels: bool (n * C); weights:\n"
"float64 (n) or None; thresholds: float32 (C); mantissa_bits < 0: no histogram (the three\n"
"index arrays None). Writes the cells of every score into all_index (int32, n * C) and those\n"
"of the positive entries, in order, into pos_index (int32, n * C) with their weights into\n"
"pos_weights (float64, n * C; None for unweighted batches); returns how many. Adds into\n"
"label_counts (C * 4), calibration (3 * bins), prob_sum (C), totals (weight total, log loss\n"
"and Brier when binary) and samples_out (9 sums for average='samples'; None unless samples).\n"
"The label-free fields as multiclass takes them, each None to skip: pred_out's cells are\n"
"(column * 2 + predicted side) * n_pred_bins + coarse bin (dense: C * 2 * n_pred_bins), the\n"
"confidence max(p, 1 - p).");

static PyObject *labelwise(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_scores, *o_labels, *o_weights, *o_thr, *o_all, *o_pos, *o_posw, *o_counts,
        *o_cal, *o_prob, *o_tot, *o_samples, *o_pidx, *o_ptab, *o_range, *o_chist, *o_ctot,
        *o_keys = Py_None, *o_kconst = Py_None, *o_mom = Py_None;
    int m, binary, samples, pm, n_pred_bins, mom_J = 0, mom_Q = 0;
    double log_eps, low_conf;
    if (!PyArg_ParseTuple(args, "OOOOippdOOOOOOOOOOiiOOdO|OOOii:labelwise", &o_scores,
                          &o_labels, &o_weights, &o_thr, &m, &binary, &samples, &log_eps, &o_all,
                          &o_pos, &o_posw, &o_counts, &o_cal, &o_prob, &o_tot, &o_samples,
                          &o_pidx, &o_ptab, &pm, &n_pred_bins, &o_range, &o_chist, &low_conf,
                          &o_ctot, &o_keys, &o_kconst, &o_mom, &mom_J, &mom_Q)) {
        return NULL;
    }
    if (m > MAX_MANTISSA_BITS) {
        return PyErr_Format(PyExc_ValueError, "mantissa_bits %d out of range", m);
    }
    lw_args a;
    memset(&a, 0, sizeof a);
    a.binned = m >= 0;
    a.binary = binary;
    a.samples = samples;
    a.log_eps = log_eps;
    if (a.binned) {
        make_layout(&a.lay, m);
    }
    buffers b = {.count = 0};
    int failed = 0;
    a.thresholds = acquire(&b, o_thr, "thresholds", F32, -1, 0, 0, &failed);
    if (failed) {
        goto fail;
    }
    const Py_ssize_t C = items(&b);
    if (C < 1 || (a.binned && C * (int64_t)a.lay.n_bins >= INT32_MAX)) {
        PyErr_SetString(PyExc_ValueError, "thresholds: 1 to 2**31 / n_bins columns");
        goto fail;
    }
    a.C = (int)C;
    a.scores = acquire(&b, o_scores, "scores", F32, -1, 0, 0, &failed);
    if (failed) {
        goto fail;
    }
    if (items(&b) % C != 0) {
        PyErr_Format(PyExc_ValueError, "scores: a multiple of %zd items, received %zd", C,
                     items(&b));
        goto fail;
    }
    a.n = items(&b) / C;
    const Py_ssize_t nC = a.n * C;
    a.labels = acquire(&b, o_labels, "labels", BOOL, nC, 0, 0, &failed);
    if (!failed) {
        a.weights = acquire(&b, o_weights, "weights", F64, a.n, 0, 1, &failed);
    }
    if (!failed) {
        a.all_index = acquire(&b, o_all, "all_index", I32, nC, 1, 1, &failed);
    }
    if (!failed) {
        a.pos_index = acquire(&b, o_pos, "pos_index", I32, nC, 1, 1, &failed);
    }
    if (!failed) {
        a.pos_weights = acquire(&b, o_posw, "pos_weights", F64, nC, 1, 1, &failed);
    }
    if (!failed) {
        a.label_counts = acquire(&b, o_counts, "label_counts", F64, C * 4, 1, 0, &failed);
    }
    if (!failed) {
        a.calibration = acquire(&b, o_cal, "calibration", F64, -1, 1, 0, &failed);
        if (!failed) {
            a.cal_bins = items(&b) / 3;
        }
    }
    if (!failed) {
        a.prob_sum = acquire(&b, o_prob, "prob_sum", F64, C, 1, 0, &failed);
    }
    if (!failed) {
        a.totals = acquire(&b, o_tot, "totals", F64, 3, 1, 0, &failed);
    }
    if (!failed) {
        a.samples_out = acquire(&b, o_samples, "samples_out", F64, 9, 1, !samples, &failed);
    }
    if (failed || acquire_label_free(&b, &a.lf, o_pidx, o_ptab, pm, n_pred_bins, o_range,
                                     o_chist, low_conf, o_ctot, nC, 2 * C, &a.lay,
                                     a.binned) != 0 ||
        acquire_keys(&b, &a.keys, o_keys, o_kconst, a.n, C, C) != 0 ||
        acquire_moments(&b, &a.mom, o_mom, mom_J, mom_Q, C, &a.lay, a.binned) != 0) {
        goto fail;
    }
    if (a.binned && (a.all_index == NULL || a.pos_index == NULL ||
                     (a.weights != NULL && a.pos_weights == NULL))) {
        PyErr_SetString(PyExc_ValueError, "all_index, pos_index (and pos_weights) are required");
        goto fail;
    }
    if (a.cal_bins < 1) {
        PyErr_SetString(PyExc_ValueError, "calibration needs 3 * bins items");
        goto fail;
    }
    if (!a.binned) {
        a.all_index = NULL;
        a.pos_index = NULL;
    }
    if (a.weights == NULL) {
        a.pos_weights = NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = labelwise_loop(&a);
    if (rc == 0) {
        finish_outputs(&a.lf, &a.lay, a.weights != NULL);
    }
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        PyErr_Format(PyExc_ValueError,
                     "scores: probabilities in [0, 1] and labels 0 or 1, row %zd is not",
                     a.bad_row);
        goto fail;
    }
    release_all(&b);
    return PyLong_FromSsize_t(a.n_pos);

fail:
    release_all(&b);
    return NULL;
}

/* ---- scatter ------------------------------------------------------------------------------ */

PyDoc_STRVAR(scatter_add_doc,
"scatter_add(target, index, weights, repeat)\n"
"--\n\n"
"target.flat[index[j]] += weights[j // repeat] (1.0 when weights is None), in the order of j,\n"
"as numpy.add.at does. target: C-contiguous float64; index: int32. Every index is checked\n"
"against target's size before anything is added (ValueError, target unchanged).");

static PyObject *scatter_add(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_target, *o_index, *o_weights;
    Py_ssize_t repeat;
    if (!PyArg_ParseTuple(args, "OOOn:scatter_add", &o_target, &o_index, &o_weights, &repeat)) {
        return NULL;
    }
    if (repeat < 1) {
        return PyErr_Format(PyExc_ValueError, "repeat: expected >= 1, received %zd", repeat);
    }
    buffers b = {.count = 0};
    int failed = 0;
    double *target = acquire(&b, o_target, "target", F64, -1, 1, 0, &failed);
    if (failed) {
        goto fail;
    }
    Py_ssize_t size = items(&b);
    const int32_t *index = acquire(&b, o_index, "index", I32, -1, 0, 0, &failed);
    if (failed) {
        goto fail;
    }
    Py_ssize_t n_index = items(&b);
    if (n_index % repeat != 0) {
        PyErr_Format(PyExc_ValueError, "index: %zd items is not a multiple of repeat %zd",
                     n_index, repeat);
        goto fail;
    }
    const double *weights = acquire(&b, o_weights, "weights", F64, n_index / repeat, 0, 1,
                                    &failed);
    if (failed) {
        goto fail;
    }
    int32_t lo = 0, hi = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < n_index; j++) {
        lo = index[j] < lo ? index[j] : lo;
        hi = index[j] > hi ? index[j] : hi;
    }
    if (lo >= 0 && (Py_ssize_t)hi < size) {
        if (weights == NULL) {
            for (Py_ssize_t j = 0; j < n_index; j++) {
                target[index[j]] += 1.0;
            }
        } else {
            Py_ssize_t n = n_index / repeat;
            for (Py_ssize_t i = 0; i < n; i++) {
                const double w = weights[i];
                const int32_t *cells = index + i * repeat;
                for (Py_ssize_t r = 0; r < repeat; r++) {
                    target[cells[r]] += w;
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (n_index && (lo < 0 || (Py_ssize_t)hi >= size)) {
        PyErr_Format(PyExc_ValueError, "index: cells in [0, %zd), received %d to %d", size, lo,
                     hi);
        goto fail;
    }
    release_all(&b);
    Py_RETURN_NONE;

fail:
    release_all(&b);
    return NULL;
}

PyDoc_STRVAR(count16_doc,
"count16(target, index, wrapped)\n"
"--\n\n"
"target.flat[index[j]] += 1 for every j, target a C-contiguous uint16 array of low 16 bits;\n"
"each cell that wraps from 65535 to 0 is written to wrapped (int32, at least len(index) items)\n"
"and their number is returned, so the caller carries them. Every index is checked against\n"
"target's size before anything is added (ValueError, target unchanged).");

static PyObject *count16(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_target, *o_index, *o_wrapped;
    if (!PyArg_ParseTuple(args, "OOO:count16", &o_target, &o_index, &o_wrapped)) {
        return NULL;
    }
    buffers b = {.count = 0};
    int failed = 0;
    uint16_t *target = acquire(&b, o_target, "target", U16, -1, 1, 0, &failed);
    if (failed) {
        goto fail;
    }
    Py_ssize_t size = items(&b);
    const int32_t *index = acquire(&b, o_index, "index", I32, -1, 0, 0, &failed);
    if (failed) {
        goto fail;
    }
    Py_ssize_t n_index = items(&b);
    int32_t *wrapped = acquire(&b, o_wrapped, "wrapped", I32, -1, 1, 0, &failed);
    if (failed) {
        goto fail;
    }
    if (items(&b) < n_index) {
        PyErr_Format(PyExc_ValueError, "wrapped: expected at least %zd items, received %zd",
                     n_index, items(&b));
        goto fail;
    }
    int32_t lo = 0, hi = 0;
    Py_ssize_t n_wrapped = 0;
    /* every index checked before any is added: one unsigned compare a cell (plain SSE2 vector
     * code, unlike a running minimum and maximum); their range only for the error message */
    const uint32_t limit = size < (Py_ssize_t)UINT32_MAX ? (uint32_t)size : UINT32_MAX;
    uint32_t outside_any = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < n_index; j++) {
        outside_any |= (uint32_t)((uint32_t)index[j] >= limit);
    }
    if (!outside_any) {
        for (Py_ssize_t j = 0; j < n_index; j++) {
            if (++target[index[j]] == 0) {
                wrapped[n_wrapped++] = index[j];
            }
        }
    } else {
        lo = hi = index[0];
        for (Py_ssize_t j = 0; j < n_index; j++) {
            lo = index[j] < lo ? index[j] : lo;
            hi = index[j] > hi ? index[j] : hi;
        }
    }
    Py_END_ALLOW_THREADS
    if (outside_any) {
        PyErr_Format(PyExc_ValueError, "index: cells in [0, %zd), received %d to %d", size, lo,
                     hi);
        goto fail;
    }
    release_all(&b);
    return PyLong_FromSsize_t(n_wrapped);

fail:
    release_all(&b);
    return NULL;
}

PyDoc_STRVAR(add16_doc,
"add16(target, values, cells, wraps)\n"
"--\n\n"
"target += values, target a C-contiguous uint16 array of low 16 bits and values uint64 counts\n"
"of the same size (a dense delta); each cell whose sum passes 65535 keeps the low 16 bits and\n"
"writes its index and the number of wraps into cells and wraps (int64, as many items as\n"
"target); returns how many.");

static PyObject *add16(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_target, *o_values, *o_cells, *o_wraps;
    if (!PyArg_ParseTuple(args, "OOOO:add16", &o_target, &o_values, &o_cells, &o_wraps)) {
        return NULL;
    }
    buffers b = {.count = 0};
    int failed = 0;
    uint16_t *target = acquire(&b, o_target, "target", U16, -1, 1, 0, &failed);
    if (failed) {
        goto fail;
    }
    const Py_ssize_t size = items(&b);
    const uint64_t *values = acquire(&b, o_values, "values", U64, size, 0, 0, &failed);
    int64_t *cells = NULL, *wraps = NULL;
    if (!failed) {
        cells = acquire(&b, o_cells, "cells", I64, size, 1, 0, &failed);
    }
    if (!failed) {
        wraps = acquire(&b, o_wraps, "wraps", I64, size, 1, 0, &failed);
    }
    if (failed) {
        goto fail;
    }
    Py_ssize_t n_wrapped = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < size; j++) { /* no branch on zero values: they are random */
        const uint64_t total = (uint64_t)target[j] + values[j];
        target[j] = (uint16_t)total;
        if (total >> 16) {
            cells[n_wrapped] = j;
            wraps[n_wrapped++] = (int64_t)(total >> 16);
        }
    }
    Py_END_ALLOW_THREADS
    release_all(&b);
    return PyLong_FromSsize_t(n_wrapped);

fail:
    release_all(&b);
    return NULL;
}

PyDoc_STRVAR(range_join_doc,
"range_join(target, own)\n"
"--\n\n"
"Join a batch's own score range into a state's: target and own (2, n_bins) float32 in\n"
"counting.RangeDelta's form, target C-contiguous; the elementwise maximum of the bit patterns,\n"
"then each bin that became mixed written as RANGE_MIXED in both rows (counting.normalise_range),\n"
"in one pass.");

static PyObject *range_join(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_target, *o_own;
    if (!PyArg_ParseTuple(args, "OO:range_join", &o_target, &o_own)) {
        return NULL;
    }
    buffers b = {.count = 0};
    int failed = 0;
    int32_t *target = acquire(&b, o_target, "target", F32, -1, 1, 0, &failed);
    const Py_ssize_t size = failed ? 0 : items(&b);
    const int32_t *own = failed ? NULL : acquire(&b, o_own, "own", F32, size, 0, 0, &failed);
    if (!failed && size % 2) {
        PyErr_Format(PyExc_ValueError, "target: expected two rows of bins, received %zd items",
                     size);
        failed = 1;
    }
    if (failed) {
        release_all(&b);
        return NULL;
    }
    const Py_ssize_t n_bins = size / 2;
    Py_BEGIN_ALLOW_THREADS
    int32_t *restrict high = target, *restrict low = target + n_bins;
    const int32_t *restrict own_high = own, *restrict own_low = own + n_bins;
    for (Py_ssize_t j = 0; j < n_bins; j++) {
        /* non-negative float32 bits order as int32; a sum of two fits */
        const int32_t h = high[j] > own_high[j] ? high[j] : own_high[j];
        const int32_t l = low[j] > own_low[j] ? low[j] : own_low[j];
        const int32_t mixed = -(int32_t)((h != 0) & ((uint32_t)h + (uint32_t)l != RANGE_TOP));
        high[j] = (h & ~mixed) | (RANGE_TOP & mixed);
        low[j] = (l & ~mixed) | (RANGE_TOP & mixed);
    }
    Py_END_ALLOW_THREADS
    release_all(&b);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(bins_doc,
"bins(out, scores, mantissa_bits)\n"
"--\n\n"
"BinLayout(mantissa_bits).bin_of of float32 scores in [0, 1] (C-contiguous, any shape) into out\n"
"(int32, as many items), in one pass; a score outside [0, 1] raises ValueError, out then\n"
"partly written.");

static PyObject *bins(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_out, *o_scores;
    int m;
    if (!PyArg_ParseTuple(args, "OOi:bins", &o_out, &o_scores, &m)) {
        return NULL;
    }
    if (!mantissa_bits_ok(m)) {
        return NULL;
    }
    buffers b = {.count = 0};
    int failed = 0;
    int32_t *out = acquire(&b, o_out, "out", I32, -1, 1, 0, &failed);
    const Py_ssize_t n = failed ? 0 : items(&b);
    const float *scores = failed ? NULL : acquire(&b, o_scores, "scores", F32, n, 0, 0, &failed);
    if (failed) {
        release_all(&b);
        return NULL;
    }
    layout lay;
    make_layout(&lay, m);
    int32_t bad = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        bad |= outside(scores[j]);
        out[j] = bin_of(lay.shift, lay.n_bins, lay.high_base, key_of(scores[j]));
    }
    release_all(&b);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "scores: probabilities in [0, 1]");
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sample_insert_doc,
"sample_insert(keys, wsq, bins, labels, batch_keys, scores, batch_labels, mantissa_bits, limit)\n"
"--\n\n"
"An unweighted multiclass batch's rows into a full row sample (row_sample.RowSample.add, the same\n"
"arrays): keys (uint64, capacity, ascending and distinct), wsq (float32), bins (uint16,\n"
"capacity * C) and labels (uint8) in place; the batch's row keys (uint64, n), float32 scores\n"
"(n * C) and int64 class indices. Each row whose key is at most the largest kept one enters: a\n"
"kept key adds 1 to its squared weight, a new one is inserted in order (its scores' bins and its\n"
"label) and the largest entry leaves. Returns how many rows entered, or -1, changing nothing,\n"
"when more than limit rows could or a squared weight could pass 2**23 (float32 sums exact below\n"
"2**24): the caller's path then.");

static PyObject *sample_insert(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_keys, *o_wsq, *o_bins, *o_labels, *o_bkeys, *o_scores, *o_blabels;
    int m;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "OOOOOOOin:sample_insert", &o_keys, &o_wsq, &o_bins, &o_labels,
                          &o_bkeys, &o_scores, &o_blabels, &m, &limit)) {
        return NULL;
    }
    if (!mantissa_bits_ok(m)) {
        return NULL;
    }
    buffers b = {.count = 0};
    int failed = 0;
    uint64_t *keys = acquire(&b, o_keys, "keys", U64, -1, 1, 0, &failed);
    const Py_ssize_t cap = failed ? 0 : items(&b);
    float *wsq = failed ? NULL : acquire(&b, o_wsq, "wsq", F32, cap, 1, 0, &failed);
    uint16_t *bins = failed ? NULL : acquire(&b, o_bins, "bins", U16, -1, 1, 0, &failed);
    const Py_ssize_t C = failed || cap == 0 ? 0 : items(&b) / cap;
    uint8_t *labels = failed ? NULL : acquire(&b, o_labels, "labels", U8, cap, 1, 0, &failed);
    const uint64_t *bkeys =
        failed ? NULL : acquire(&b, o_bkeys, "batch_keys", U64, -1, 0, 0, &failed);
    const Py_ssize_t n = failed ? 0 : items(&b);
    const float *scores =
        failed ? NULL : acquire(&b, o_scores, "scores", F32, n * C, 0, 0, &failed);
    const int64_t *blabels =
        failed ? NULL : acquire(&b, o_blabels, "batch_labels", I64, n, 0, 0, &failed);
    if (!failed && (cap < 1 || C < 1 || C > 256 || b.views[2].len != cap * C * 2)) {
        PyErr_Format(PyExc_ValueError, "a sample of at least one row and 1 to 256 columns, "
                     "received %zd rows and %zd columns", cap, C);
        failed = 1;
    }
    if (failed) {
        release_all(&b);
        return NULL;
    }
    layout lay;
    make_layout(&lay, m);
    /* everything is checked before anything changes: the candidates (at most limit), their
     * scores and labels, and the kept squared weights */
    const uint64_t top = keys[cap - 1];
    Py_ssize_t candidates = 0, bad_row = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (bkeys[i] > top) {
            continue;
        }
        candidates++;
        int32_t bad = blabels[i] < 0 || blabels[i] >= C;
        for (Py_ssize_t c = 0; c < C; c++) {
            bad |= outside(scores[i * C + c]);
        }
        if (bad && bad_row < 0) {
            bad_row = i;
        }
    }
    float heaviest = 0.0f;
    for (Py_ssize_t j = 0; j < cap; j++) {
        heaviest = wsq[j] > heaviest ? wsq[j] : heaviest;
    }
    if (bad_row >= 0) {
        release_all(&b);
        PyErr_Format(PyExc_ValueError, "row %zd: probabilities in [0, 1] and a class index "
                     "below %zd", bad_row, C);
        return NULL;
    }
    if (candidates > limit || !(heaviest + (float)candidates < 8388608.0f)) {
        release_all(&b);
        return PyLong_FromLong(-1);
    }
    Py_ssize_t entered = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint64_t k = bkeys[i];
        if (k > keys[cap - 1]) { /* the largest kept key only falls */
            continue;
        }
        entered++;
        Py_ssize_t lo = 0, hi = cap - 1; /* the first kept key >= k (keys[cap - 1] is) */
        while (lo < hi) {
            const Py_ssize_t mid = (lo + hi) / 2;
            if (keys[mid] < k) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (keys[lo] == k) {
            wsq[lo] += 1.0f;
            continue;
        }
        const Py_ssize_t move = cap - 1 - lo; /* entries after the new one; the last leaves */
        memmove(keys + lo + 1, keys + lo, (size_t)move * sizeof *keys);
        memmove(wsq + lo + 1, wsq + lo, (size_t)move * sizeof *wsq);
        memmove(labels + lo + 1, labels + lo, (size_t)move * sizeof *labels);
        memmove(bins + (lo + 1) * C, bins + lo * C, (size_t)(move * C) * sizeof *bins);
        keys[lo] = k;
        wsq[lo] = 1.0f;
        labels[lo] = (uint8_t)blabels[i];
        for (Py_ssize_t c = 0; c < C; c++) {
            bins[lo * C + c] =
                (uint16_t)bin_of(lay.shift, lay.n_bins, lay.high_base, key_of(scores[i * C + c]));
        }
    }
    release_all(&b);
    return PyLong_FromSsize_t(entered);
}

/* Row sums of n rows of K float32 scores in float64, four partial sums a row (its chain of
 * dependent adds split four ways); K_const: K when known at compile time (the loop unrolled),
 * else 0. */
static inline __attribute__((always_inline)) void row_sums_k(double *restrict sums,
                                                            const float *restrict scores,
                                                            Py_ssize_t n, const Py_ssize_t K_const,
                                                            Py_ssize_t K_any)
{
    const Py_ssize_t K = K_const ? K_const : K_any;
    for (Py_ssize_t i = 0; i < n; i++) {
        const float *restrict row = scores + i * K;
        double t[4] = {0.0, 0.0, 0.0, 0.0};
        _Pragma("GCC unroll 12")
        for (Py_ssize_t c = 0; c < K; c++) {
            t[c & 3] += (double)row[c];
        }
        sums[i] = (t[0] + t[1]) + (t[2] + t[3]);
    }
}

PyDoc_STRVAR(row_sums_doc,
"row_sums(sums, scores, n_columns)\n"
"--\n\n"
"Each row's sum in float64 of float32 scores (C-contiguous, n * n_columns items) into sums\n"
"(float64, n items): batch validation's check that probability rows sum to 1.");

static PyObject *row_sums(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_sums, *o_scores;
    Py_ssize_t K;
    if (!PyArg_ParseTuple(args, "OOn:row_sums", &o_sums, &o_scores, &K)) {
        return NULL;
    }
    if (K < 1) {
        PyErr_Format(PyExc_ValueError, "n_columns: expected at least 1, received %zd", K);
        return NULL;
    }
    buffers b = {.count = 0};
    int failed = 0;
    double *sums = acquire(&b, o_sums, "sums", F64, -1, 1, 0, &failed);
    const Py_ssize_t n = failed ? 0 : items(&b);
    const float *scores =
        failed ? NULL : acquire(&b, o_scores, "scores", F32, n * K, 0, 0, &failed);
    if (failed) {
        release_all(&b);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
#define SUMS_CASE(k)                           \
    case k:                                    \
        row_sums_k(sums, scores, n, k, K);     \
        break;
    switch (K) {
        SUMS_CASE(2) SUMS_CASE(3) SUMS_CASE(4) SUMS_CASE(5) SUMS_CASE(6)
        SUMS_CASE(7) SUMS_CASE(8) SUMS_CASE(9) SUMS_CASE(10) SUMS_CASE(11)
    default:
        row_sums_k(sums, scores, n, 0, K);
    }
#undef SUMS_CASE
    Py_END_ALLOW_THREADS
    release_all(&b);
    Py_RETURN_NONE;
}

/* ---- row keys ----------------------------------------------------------------------------- */

PyDoc_STRVAR(row_keys_doc,
"row_keys(out, scores, n_columns, constants, labels, multihot)\n--\n\n"
"The row sample's 64-bit keys (row_sample.row_keys, the same values) of float32 scores\n"
"(C-contiguous, n * n_columns) into out (uint64, n), in one pass: the scores' bits, two\n"
"columns to a native 64-bit word (as numpy's view), times constants[j] for word j, plus the\n"
"last column's bits times the next constant when n_columns is odd, plus the label's share\n"
"(labels: int64 (n) class indices times the next constant; or multihot: bool (n * n_columns),\n"
"the sum of the next n_columns constants over the row's true columns), summed with wrapping,\n"
"then mixed (xor-shift 32, times 0xBF58476D1CE4E5B9, xor-shift 29).");

static PyObject *row_keys(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_out, *o_scores, *o_consts, *o_labels, *o_multihot;
    Py_ssize_t n_cols;
    if (!PyArg_ParseTuple(args, "OOnOOO:row_keys", &o_out, &o_scores, &n_cols, &o_consts,
                          &o_labels, &o_multihot)) {
        return NULL;
    }
    if (n_cols < 1) {
        return PyErr_Format(PyExc_ValueError, "n_columns: expected >= 1, received %zd", n_cols);
    }
    if ((o_labels == Py_None) == (o_multihot == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "labels, multihot: expected exactly one of them");
        return NULL;
    }
    buffers b = {.count = 0};
    int failed = 0;
    const float *scores = acquire(&b, o_scores, "scores", F32, -1, 0, 0, &failed);
    if (failed) {
        goto fail;
    }
    const Py_ssize_t n_cells = items(&b);
    if (n_cells % n_cols != 0) {
        PyErr_Format(PyExc_ValueError, "scores: %zd items is not a multiple of n_columns %zd",
                     n_cells, n_cols);
        goto fail;
    }
    const Py_ssize_t n = n_cells / n_cols, pairs = n_cols / 2, odd = n_cols % 2;
    const Py_ssize_t n_consts = pairs + odd + (o_labels != Py_None ? 1 : n_cols);
    uint64_t *out = acquire(&b, o_out, "out", U64, n, 1, 0, &failed);
    if (failed) {
        goto fail;
    }
    const uint64_t *k = acquire(&b, o_consts, "constants", U64, n_consts, 0, 0, &failed);
    if (failed) {
        goto fail;
    }
    const int64_t *labels = acquire(&b, o_labels, "labels", I64, n, 0, 1, &failed);
    if (failed) {
        goto fail;
    }
    const char *multihot = acquire(&b, o_multihot, "multihot", BOOL, n_cells, 0, 1, &failed);
    if (failed) {
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    const uint64_t *k_label = k + pairs + odd;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint64_t share = labels ? (uint64_t)labels[i] * k_label[0]
                                      : multihot_share((const uint8_t *)multihot + i * n_cols,
                                                       n_cols, k_label);
        out[i] = row_key(scores + i * n_cols, n_cols, k, share);
    }
    Py_END_ALLOW_THREADS
    release_all(&b);
    Py_RETURN_NONE;

fail:
    release_all(&b);
    return NULL;
}

/* ---- module ------------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"multiclass", multiclass, METH_VARARGS, multiclass_doc},
    {"labelwise", labelwise, METH_VARARGS, labelwise_doc},
    {"scatter_add", scatter_add, METH_VARARGS, scatter_add_doc},
    {"count16", count16, METH_VARARGS, count16_doc},
    {"add16", add16, METH_VARARGS, add16_doc},
    {"range_join", range_join, METH_VARARGS, range_join_doc},
    {"bins", bins, METH_VARARGS, bins_doc},
    {"row_sums", row_sums, METH_VARARGS, row_sums_doc},
    {"sample_insert", sample_insert, METH_VARARGS, sample_insert_doc},
    {"row_keys", row_keys, METH_VARARGS, row_keys_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_fastcount",
    "The fused ingest kernel of evalstream (see evalstream_server.engine.fastcount).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__fastcount(void)
{
    return PyModule_Create(&module);
}
