// Command greet is a main package under a major version suffix: go build
// names its binary "greet".
package main

import "fmt"

func main() { fmt.Println("greet") }
