// Package envelope defines the event as it travels on the wire: a JSON
// object that is also a valid CloudEvents 1.0 structured-mode event, so any
// CloudEvents tool can read what durabus stores and publishes.
//
//	{"specversion":"1.0","id":"0190c1b2-7f3a-7c3e-9d2b-5f8e1a2b3c4d",
//	 "source":"checkout","type":"order.placed",
//	 "time":"2024-07-01T12:00:00.123456789Z",
//	 "datacontenttype":"application/json","version":2,
//	 "traceparent":"00-…-…-01","correlationid":"abc",
//	 "data":{"id":"o-1","total":42}}
//
// New and NewRaw build an Envelope (new UUIDv7 id, current UTC time,
// version 1, source "durabus" unless options say otherwise); Encode writes
// it by hand, without reflection; Decode (or a Decoder with its own
// MaxSize) reads one back strictly and within a size limit (default 1 MiB);
// Bind unmarshals the data into a Go value.
//
// Decisions worth knowing:
//
//   - "version" (the schema version of data, an integer extension
//     attribute) is always written; when absent on decode it means 1.
//   - Decode accepts any UUID in canonical lowercase form as id (not the
//     nil UUID); New makes UUIDv7s. The id is the dedupe key, so one event
//     has exactly one spelling.
//   - Unknown top-level attributes become Extensions. Their names must be
//     1–20 characters of a–z, 0–9; string values are kept, number and
//     boolean values are kept as their JSON text and re-encoded as strings,
//     null means absent, objects and arrays are rejected (ErrFieldType).
//   - Invalid UTF-8 anywhere, and unpaired UTF-16 surrogate escapes in
//     attribute strings, are rejected. Data is any JSON value and is kept
//     byte for byte (lone surrogate escapes inside data are left alone).
//   - Errors are *FieldError values naming the attribute, matching one of
//     ErrTooLarge, ErrSyntax, ErrMissingField, ErrFieldType,
//     ErrInvalidField or ErrDuplicateField with errors.Is.
//
// The position of an event in its topic is not part of the envelope; the
// transport carries it beside the encoded bytes.
package envelope
