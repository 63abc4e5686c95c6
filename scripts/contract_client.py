print("client placeholder")
