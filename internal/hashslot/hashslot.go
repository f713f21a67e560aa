// Package hashslot computes Redis Cluster hash slots without a server, for
// the CLI (which master serves a topic) and the test kits.
package hashslot

import "strings"

// Count is the number of hash slots of a Redis Cluster.
const Count = 16384

// Of returns the hash slot (0..Count-1) of a key or shard channel as Redis
// Cluster computes it: CRC16 (XMODEM) modulo 16384 of the key's hash tag,
// the bytes between the first "{" and the next "}" when there are any, or
// else of the whole key. So "durabus:{orders}:log" and "{orders}" share a
// slot.
func Of(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % Count)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0).
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
