// Command hello prints the version it was built with (-X main.version).
package main

import "fmt"

var version = "unset"

func main() { fmt.Println("hello", version) }
