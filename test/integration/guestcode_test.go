package integration

// Builders of tiny x86 real-mode programs that prove what a guest ran: each prints a word
// on the first serial port (COM1, I/O port 0x3f8), which the test domain writes to a file.
// QEMU's 16550 sends a byte written to its transmit register without any set-up.

import (
	"encoding/binary"
	"fmt"
)

// printCode is real-mode code that writes word to COM1, reading it from its own code
// segment. msgOffset is where the word will sit in that segment; epilogue follows the
// loop (a halt, a far return).
func printCode(msgOffset int, prologue, epilogue []byte) []byte {
	code := append([]byte{}, prologue...)
	code = append(code,
		0x0e,             // push cs
		0x1f,             // pop ds: the word is in our own segment
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xbe, byte(msgOffset), byte(msgOffset>>8), // mov si, msgOffset
		0xac,       // loop: lodsb
		0x84, 0xc0, // test al, al
		0x74, 0x03, // jz done (over out and jmp)
		0xee,       // out dx, al
		0xeb, 0xf8, // jmp loop
	)
	return append(code, epilogue...) // done:
}

// BIOSImage is a 64 KiB system ROM for <os><loader type='rom'> (QEMU's -bios): QEMU maps
// it below 1 MiB at 0xF0000 and the CPU starts at 0xFFFF0, offset 0xFFF0, where a far jump
// leads to code at offset 0 that prints word and halts.
func BIOSImage(word string) []byte {
	const size = 64 << 10
	rom := make([]byte, size)
	halt := []byte{
		0xfa,       // cli
		0xf4,       // hlt
		0xeb, 0xfd, // jmp hlt
	}
	// The code's length does not depend on msgOffset, so build it twice.
	code := printCode(0, nil, halt)
	code = printCode(len(code), nil, halt)
	copy(rom, code)
	copy(rom[len(code):], word+"\r\n\x00")
	// Reset vector: jmp far 0xF000:0x0000.
	copy(rom[0xfff0:], []byte{0xea, 0x00, 0x00, 0x00, 0xf0})
	return rom
}

// OptionROM is a PCI expansion ROM for a device's <rom file> (QEMU's romfile): the BIOS
// (SeaBIOS) finds the 0x55 0xAA signature and a PCI data structure naming the device's
// vendor and device id, and far-calls the initialisation entry at offset 3, which prints
// word and returns. vendor and device must be the device's own (e1000: 0x8086, 0x100e).
func OptionROM(vendor, device uint16, word string) []byte {
	const (
		size    = 512  // one 512-byte block
		pcir    = 0x20 // where the PCI data structure sits
		codeOff = 0x40
	)
	rom := make([]byte, size)
	rom[0], rom[1] = 0x55, 0xaa
	rom[2] = size / 512
	rom[3], rom[4] = 0xeb, codeOff-5 // jmp short to the code
	binary.LittleEndian.PutUint16(rom[0x18:], pcir)
	p := rom[pcir:]
	copy(p, "PCIR")
	binary.LittleEndian.PutUint16(p[4:], vendor)
	binary.LittleEndian.PutUint16(p[6:], device)
	binary.LittleEndian.PutUint16(p[10:], 0x18) // structure length
	p[13], p[14], p[15] = 0x00, 0x00, 0x02      // class: network controller
	binary.LittleEndian.PutUint16(p[16:], size/512)
	p[20] = 0x00 // code type: x86
	p[21] = 0x80 // last image

	save := []byte{0x60, 0x1e}          // pusha; push ds
	restore := []byte{0x1f, 0x61, 0xcb} // pop ds; popa; retf
	code := printCode(0, save, restore)
	code = printCode(codeOff+len(code), save, restore)
	copy(rom[codeOff:], code)
	msg := codeOff + len(code)
	if msg+len(word)+4 > size-1 {
		panic(fmt.Sprintf("word %q does not fit in the option ROM", word))
	}
	copy(rom[msg:], word+"\r\n\x00")
	// The bytes of a valid ROM add up to 0.
	var sum byte
	for _, b := range rom[:size-1] {
		sum += b
	}
	rom[size-1] = -sum
	return rom
}
