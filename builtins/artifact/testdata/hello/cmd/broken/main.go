// Command broken does not compile: the build's error must show go's words.
package main

func main() { notDefined() }
