package envelope_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/durabus/durabus/envelope"
)

type OrderPlaced struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func ExampleNew() {
	e, err := envelope.New("order.placed", OrderPlaced{ID: "o-1", Total: 42},
		envelope.WithSource("checkout"),
		envelope.WithVersion(2),
		envelope.WithExtension("correlationid", "abc"),
		// Fixed here so the output is stable; by default a new UUIDv7 and time.Now().
		envelope.WithID("0190c1b2-7f3a-7c3e-9d2b-5f8e1a2b3c4d"),
		envelope.WithTime(time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := e.Encode()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(b))
	// Output:
	// {"specversion":"1.0","id":"0190c1b2-7f3a-7c3e-9d2b-5f8e1a2b3c4d","source":"checkout","type":"order.placed","time":"2024-07-01T12:00:00.000000000Z","datacontenttype":"application/json","version":2,"correlationid":"abc","data":{"id":"o-1","total":42}}
}

func ExampleDecode() {
	in := []byte(`{"specversion":"1.0","id":"0190c1b2-7f3a-7c3e-9d2b-5f8e1a2b3c4d",
		"source":"checkout","type":"order.placed","time":"2024-07-01T12:00:00Z",
		"correlationid":"abc","data":{"id":"o-1","total":42}}`)
	e, err := envelope.Decode(in)
	if err != nil {
		fmt.Println(err)
		return
	}
	var o OrderPlaced
	if err := e.Bind(&o); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(e.Type, "version", e.Version, e.Extensions["correlationid"], o.ID, o.Total)

	_, err = envelope.Decode([]byte(`{"specversion":"1.0","version":0}`))
	var fe *envelope.FieldError
	fmt.Println(errors.Is(err, envelope.ErrInvalidField), errors.As(err, &fe) && fe.Field == "version")
	fmt.Println(err)
	// Output:
	// order.placed version 1 abc o-1 42
	// true true
	// envelope: "version": invalid attribute: must be an integer from 1 to 2147483647, got 0
}

func ExampleDecoder() {
	d := envelope.Decoder{MaxSize: 64 << 10} // 64 KiB instead of the default 1 MiB
	_, err := d.Decode(make([]byte, 100<<10))
	fmt.Println(errors.Is(err, envelope.ErrTooLarge))
	// Output:
	// true
}
