// A small evalstream client in Node.js, written from proto/evalstream/v1/*.proto and the report's
// JSON Schema alone (no Python, no README): it asks the server for its limits, creates a stream,
// sends labelled batches with a producer id and sequence numbers (resending one to see it answered
// DUPLICATE, and one of the wrong width to see it REJECTED with its field_error), reads the
// report, validates it against the schema, reads the google.rpc.Status details of a failed call
// and prints what it saw as JSON.
//
//   node client.js TARGET INPUT.json
//
// INPUT.json: {"stream": "...", "classes": [...], "labels": [int, ...], "scores": [[float, ...]],
//              "batch_rows": int}
// Run by tests/examples/test_node_client.py against a live server; dependencies come from
// package-lock.json (scripts/tools.d/node-example.sh).
"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");
const Ajv2020 = require("ajv/dist/2020").default;

const PROTO_DIR = path.resolve(__dirname, "../../proto");

function loadService() {
  const definition = protoLoader.loadSync("evalstream/v1/evalstream_service.proto", {
    includeDirs: [PROTO_DIR],
    keepCase: true, // field names exactly as in the .proto files
    longs: Number, // uint64 counts as numbers
    enums: String, // enum values by name: "BATCH_STATUS_ACCEPTED"
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).evalstream.v1.EvalstreamService;
}

// A Tensor: little-endian bytes, row-major, as tensor.proto says.
function float32Tensor(rows) {
  const width = rows[0].length;
  const data = Buffer.alloc(rows.length * width * 4);
  rows.forEach((row, i) => row.forEach((v, j) => data.writeFloatLE(v, (i * width + j) * 4)));
  return { dtype: "DATA_TYPE_FLOAT32", shape: [rows.length, width], data };
}

function int32Tensor(values) {
  const data = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => data.writeInt32LE(v, i * 4));
  return { dtype: "DATA_TYPE_INT32", shape: [values.length], data };
}

function unary(client, method, request) {
  return new Promise((resolve, reject) =>
    client[method](request, (err, response) => (err ? reject(err) : resolve(response))),
  );
}

// One Ingest call: every batch gets exactly one result, in order; the last response has totals.
function ingest(client, batches) {
  return new Promise((resolve, reject) => {
    const results = [];
    let totals = null;
    const call = client.Ingest();
    call.on("data", (response) => {
      results.push(...response.results);
      totals = response;
    });
    call.on("error", reject);
    call.on("end", () => resolve({ results, totals }));
    batches.forEach((b) => call.write(b));
    call.end();
  });
}

// google.rpc.Status (google/rpc/status.proto), the `grpc-status-details-bin` trailer of a failed
// call: code, message and typed details. Three fields, so it is declared here; the details this
// example reads are evalstream.v1.FieldError, from the project's own protos.
const STATUS = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: "int32", id: 1 },
                message: { type: "string", id: 2 },
                details: { rule: "repeated", type: "Any", id: 3 },
              },
            },
            Any: {
              fields: { type_url: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } },
            },
          },
        },
      },
    },
  },
}).lookupType("google.rpc.Status");

function statusDetails(err) {
  const [raw] = err.metadata.get("grpc-status-details-bin");
  const status = STATUS.decode(raw);
  const fieldErrorType = protobuf
    .loadSync(path.join(PROTO_DIR, "evalstream/v1/ingest.proto"))
    .lookupType("evalstream.v1.FieldError");
  const out = { code: status.code, message: status.message, types: [], field_error: null };
  for (const any of status.details) {
    const type = any.type_url.split("/").pop();
    out.types.push(type);
    if (type === "evalstream.v1.FieldError") {
      out.field_error = fieldErrorType.toObject(fieldErrorType.decode(any.value));
    }
  }
  return out;
}

async function main() {
  const [target, inputPath] = process.argv.slice(2);
  const input = JSON.parse(fs.readFileSync(inputPath, "utf8"));
  const Service = loadService();
  const client = new Service(target, grpc.credentials.createInsecure());

  const info = await unary(client, "GetServerInfo", {});
  const maxRows = info.limits.max_batch_rows;
  const rows = Math.min(input.batch_rows, maxRows);

  await unary(client, "CreateStream", {
    config: {
      name: input.stream,
      task: "TASK_MULTICLASS",
      classes: input.classes,
      score_kind: "SCORE_KIND_PROBABILITIES",
      resolution: { exact: { max_samples: 0 } }, // sklearn's values exactly
    },
  });

  const producer = `node-${process.pid}`;
  const batches = [];
  for (let start = 0, seq = 1; start < input.labels.length; start += rows, seq += 1) {
    batches.push({
      stream: input.stream,
      producer_id: producer,
      sequence: seq,
      scores: float32Tensor(input.scores.slice(start, start + rows)),
      labels: int32Tensor(input.labels.slice(start, start + rows)),
    });
  }
  batches.push(batches[0]); // a resend after a lost ack: DUPLICATE, counted once
  const width = input.classes.length;
  batches.push({
    stream: input.stream,
    producer_id: producer,
    sequence: batches.length, // the next number: 1 resend, so as many batches as numbers so far
    scores: float32Tensor([new Array(width + 1).fill(1 / (width + 1))]), // one column too many
    labels: int32Tensor([0]),
  });
  const { results, totals } = await ingest(client, batches);

  const response = await unary(client, "GetReport", { stream: input.stream });
  const report = JSON.parse(response.report_json);
  const schema = JSON.parse(
    fs.readFileSync(path.join(PROTO_DIR, "evalstream/v1/report.schema.json"), "utf8"),
  );
  const validate = new Ajv2020({ strict: false, allErrors: true }).compile(schema);
  const valid = validate(report);

  let unknownWindow = null; // a window the stream does not have: INVALID_ARGUMENT, with details
  try {
    await unary(client, "GetReport", { stream: input.stream, window: "13m" });
  } catch (err) {
    unknownWindow = { grpc_code: err.code, ...statusDetails(err) };
  }

  const headline = response.headline;
  const out = {
    server_version: info.server_version,
    max_batch_rows: maxRows,
    statuses: results.map((r) => r.status),
    rejected_field_error: results[results.length - 1].field_error,
    unknown_window: unknownWindow,
    expected_sequences: results.map((r) => r.expected_sequence),
    accepted_samples: totals.accepted_samples,
    duplicate_batches: totals.duplicate_batches,
    schema_valid: valid,
    schema_errors: valid ? [] : validate.errors.slice(0, 5),
    report_version: report.report_version,
    schema_version: schema.properties.report_version.const,
    n_samples: report.n_samples,
    roc_auc_macro: report.roc_auc.macro.value,
    roc_auc_ovo_macro: report.roc_auc.ovo_macro.value,
    recall_per_class: Object.fromEntries(
      Object.entries(report.recall.per_class).map(([c, leaf]) => [c, leaf.value]),
    ),
    headline_roc_auc_macro: headline.roc_auc.macro.value,
    accuracy: report.accuracy.value,
  };
  process.stdout.write(JSON.stringify(out) + "\n");
  client.close();
}

main().catch((err) => {
  process.stderr.write(`evalstream node example: ${err.stack || err}\n`);
  process.exit(1);
});
